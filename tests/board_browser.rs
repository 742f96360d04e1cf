//! The status board in a real headless Chromium, driven over WebDriver,
//! against the real daemon and the Graph simulator on loopback: a wrong
//! token is refused, signing in shows the agents with both statuses, a CC
//! status change shows without a reload, a hostile display name stays text,
//! the viewer token reads and cannot write, the tabs work from the
//! keyboard, the directory drawer searches and offers `tel:` links, and
//! the health view's Cluster card shows on a cluster's active node (its
//! changes arriving through the live stream) and stays hidden alone.
//! Screenshots of each view go to `target/board-screenshots/` and must not
//! be blank.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the tests
//! say why and skip, unless `PRESENCE_SYNC_REQUIRE_CHROMIUM=1` (CI).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::daemon_kit::{DaemonKit, VIEWER_TOKEN, options, until};
use common::webdriver::{Browser, browser_or_skip};
use serde_json::{Value, json};

/// A display name that runs script if it is ever put on the page as HTML.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";
/// Long enough for a loaded CI machine; nothing here times the board.
const PATIENCE: Duration = Duration::from_secs(30);

/// One browser at a time: the machine may have two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The config's `[sync]` and one queue.
const SYNC_AND_QUEUE: &str = r#"echo_window = "10s"

[routing.queues.sales]
strategy = "longest-idle"
offer_timeout = "60s"
"#;

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("board-screenshots")
}

/// Saves the screenshot and checks it shows something: a PNG of the
/// viewport's size with many colours, no single one covering nearly all.
/// Returns the most common colour (the background).
async fn screenshot(browser: &Browser, name: &str) -> [u8; 3] {
    let png_bytes = browser.screenshot().await;
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png_bytes).expect("screenshot written");

    let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).expect("its pixels");
    let channels = frame.color_type.samples();
    assert!(
        frame.width >= 800 && frame.height >= 600,
        "{name}: {}×{}",
        frame.width,
        frame.height
    );
    let mut counts = std::collections::HashMap::new();
    for pixel in pixels[..frame.buffer_size()].chunks(channels) {
        *counts
            .entry(pixel[..3.min(channels)].to_vec())
            .or_insert(0usize) += 1;
    }
    let total: usize = counts.values().sum();
    let most = counts.values().copied().max().unwrap_or(0);
    assert!(
        counts.len() >= 16,
        "{name} ({}) is nearly blank: {} colours",
        path.display(),
        counts.len()
    );
    assert!(
        most * 100 < total * 99,
        "{name} ({}) is one colour",
        path.display()
    );
    let background = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(colour, _)| colour.clone())
        .unwrap_or_default();
    [0, 1, 2].map(|i| background.get(i).copied().unwrap_or(0))
}

/// Rec. 601 luma of a colour, 0–255.
fn luma([r, g, b]: [u8; 3]) -> u32 {
    (299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b)) / 1000
}

/// The simulator's domain (users' UPNs end in it).
fn domain(kit: &DaemonKit) -> String {
    let (_, upn) = kit.user(0);
    upn.rsplit('@').next().unwrap_or_default().to_string()
}

/// Adds a user to the simulated tenant; its object id.
async fn add_user(kit: &DaemonKit, body: Value) -> String {
    let response = kit
        .http
        .post(format!("{}/_sim/users", kit.sim.base_url))
        .json(&body)
        .send()
        .await
        .expect("POST /_sim/users");
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.expect("the user");
    user["id"].as_str().expect("its id").to_string()
}

/// Signs in on the page with `token` (the sign-in form is showing).
async fn sign_in(browser: &Browser, token: &str) {
    browser.clear("#token").await;
    browser.type_into("#token", token).await;
    browser.click("#signin-button").await;
}

/// Watches for script run by data: `alert` counts, and so does any `img`
/// that fails to load (the hostile name's `src=x`).
async fn watch_for_script(browser: &Browser) {
    browser
        .script(
            "window.__ran = 0; window.alert = () => { window.__ran += 1; };\
             document.addEventListener('error', (e) => {\
               if (e.target && e.target.tagName === 'IMG') window.__ran += 1; }, true);\
             window.__page = 'first';",
            json!([]),
        )
        .await;
}

async fn no_script_ran(browser: &Browser) {
    let ran = browser.script("return window.__ran;", json!([])).await;
    assert_eq!(ran, json!(0), "script from data ran");
    let images = browser
        .script("return document.querySelectorAll('img').length;", json!([]))
        .await;
    assert_eq!(images, json!(0), "an img element was made from data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_signs_in_shows_agents_live_and_keeps_names_as_text() {
    let Some(chromium) = browser_or_skip("board_browser") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let kit = DaemonKit::start_opts(5, SYNC_AND_QUEUE, options()).await;
    let domain = domain(&kit);
    let hostile_upn = format!("hostile@{domain}");
    add_user(
        &kit,
        json!({"displayName": HOSTILE, "userPrincipalName": hostile_upn}),
    )
    .await;
    kit.link("agent-a", 0).await;
    let r = kit
        .put(
            "/v1/agents/agent-a",
            json!({"teams_user": kit.user(0).1, "queues": [{"queue": "sales"}]}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = kit
        .put(
            "/v1/agents/agent-x",
            json!({"teams_user": hostile_upn, "auto_link": true}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    until(|| async { kit.agent("agent-x").await["linked"] == json!(true) }).await;
    assert_eq!(kit.agent("agent-x").await["display_name"], json!(HOSTILE));
    assert_eq!(kit.status("agent-a", "Available").await.status(), 200);
    until(|| async { kit.agent("agent-a").await["teams"]["presence"].is_object() }).await;

    // The viewer token reads and cannot write.
    let viewer_read = kit
        .http
        .get(format!("{}/v1/agents", kit.base))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(viewer_read.status(), 200);
    let viewer_write = kit
        .http
        .put(format!("{}/v1/agents/agent-a/status", kit.base))
        .bearer_auth(VIEWER_TOKEN)
        .json(&json!({"status": "Lunch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(viewer_write.status(), 403);
    let refusal: Value = viewer_write.json().await.unwrap();
    assert_eq!(refusal["error"]["code"], "forbidden");
    assert_eq!(kit.agent("agent-a").await["cc"]["status"], "Available");

    let browser = Browser::start(&chromium, 1280, 900).await;
    browser.goto(&format!("{}/", kit.base)).await;
    browser.wait_for("#token").await;
    watch_for_script(&browser).await;

    // A wrong token is refused, in words, and the board stays hidden.
    sign_in(&browser, "not-the-token").await;
    assert!(
        browser
            .until(
                "const e = document.getElementById('signin-error');\
                 return !e.hidden && e.textContent.includes('refused');",
                json!([]),
                PATIENCE,
            )
            .await,
        "the wrong token was not refused on the page"
    );
    assert_eq!(
        browser
            .script("return document.getElementById('board').hidden;", json!([]))
            .await,
        json!(true)
    );
    screenshot(&browser, "signin-refused").await;

    // The viewer token signs in; the agents appear with both statuses.
    sign_in(&browser, VIEWER_TOKEN).await;
    let both_statuses = "const row = document.querySelector(`tr[data-agent-id=\"${arguments[0]}\"]`);\
         if (!row) return false;\
         const cc = row.querySelector('.cc-status').textContent;\
         const teams = row.querySelector('.teams-presence [data-availability]');\
         return cc.includes(arguments[1]) && teams !== null && teams.textContent.length > 0;";
    assert!(
        browser
            .until(both_statuses, json!(["agent-a", "Available"]), PATIENCE)
            .await,
        "agent-a did not show its CC status and Teams presence"
    );
    browser.wait_for("tr[data-agent-id=\"agent-x\"]").await;
    assert!(
        browser
            .until(
                "return document.getElementById('live').textContent === 'Live';",
                json!([]),
                PATIENCE
            )
            .await,
        "the live stream did not connect"
    );
    // The hostile name is shown as the text it is.
    assert_eq!(
        browser
            .text("tr[data-agent-id=\"agent-x\"] td:first-child .name")
            .await,
        HOSTILE
    );
    no_script_ran(&browser).await;
    let light = screenshot(&browser, "agents").await;
    // Dark follows the system's preference.
    browser.color_scheme("dark").await;
    let dark = screenshot(&browser, "agents-dark").await;
    assert!(
        luma(light) > 180 && luma(dark) < 80,
        "light background {light:?}, dark background {dark:?}"
    );
    browser.color_scheme("light").await;

    // A CC status change shows on the board without a reload.
    assert_eq!(kit.status("agent-a", "Lunch").await.status(), 200);
    assert!(
        browser
            .until(both_statuses, json!(["agent-a", "Lunch"]), PATIENCE)
            .await,
        "the CC status change did not reach the board"
    );
    // A new agent shows up, too.
    let r = kit
        .put(
            "/v1/agents/agent-b",
            json!({"teams_user": kit.user(1).1, "auto_link": true}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    browser.wait_for("tr[data-agent-id=\"agent-b\"]").await;
    assert_eq!(
        browser.script("return window.__page;", json!([])).await,
        json!("first"),
        "the page was reloaded"
    );

    // A contact waits (agent-a is at lunch): the queue view shows it. The
    // tabs move with the arrow keys.
    let contact = kit
        .post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "c-1"}),
        )
        .await;
    assert_eq!(contact.status(), 201, "{:?}", contact.text().await);
    browser
        .script("document.getElementById('tab-agents').focus();", json!([]))
        .await;
    browser.type_into("#tab-agents", "\u{E014}").await;
    assert!(
        browser
            .until(
                "return document.getElementById('tab-queues').getAttribute('aria-selected') === 'true'\
                 && !document.getElementById('view-queues').hidden\
                 && document.activeElement.id === 'tab-queues';",
                json!([]),
                PATIENCE
            )
            .await,
        "ArrowRight did not move to the queues tab"
    );
    assert!(
        browser
            .until(
                "const row = document.querySelector('tr[data-queue=\"sales\"]');\
                 return row !== null && row.children[2].textContent === '1';",
                json!([]),
                PATIENCE
            )
            .await,
        "the waiting contact did not show in the queue view"
    );
    screenshot(&browser, "queues").await;

    browser.click("#tab-health").await;
    assert!(
        browser
            .until(
                "return document.getElementById('health-ready').textContent.length > 0\
                 && document.querySelectorAll('#health-graph dt').length > 3\
                 && document.querySelectorAll('#tasks-body tr').length > 0;",
                json!([]),
                PATIENCE
            )
            .await,
        "the health view stayed empty"
    );
    screenshot(&browser, "health").await;
    no_script_ran(&browser).await;

    // Signing out forgets the token.
    browser.click("#signout").await;
    assert_eq!(
        browser
            .script(
                "return [document.getElementById('signin').hidden, sessionStorage.length];",
                json!([])
            )
            .await,
        json!([false, 0])
    );
    drop(browser);

    // A board's stream ends when the daemon stops, and does not hold it up.
    let mut stream = kit
        .http
        .get(format!("{}/v1/board/stream", kit.base))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap_or_default();
    assert!(first.starts_with(b"event: update\n"), "{first:?}");
    kit.stop().await;
    let ended = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the board's stream outlived the daemon");
}

/// Needs `GET /v1/directory` (the Teams directory for everyone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_drawer_searches_and_calls() {
    let Some(chromium) = browser_or_skip("board_browser") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let kit = DaemonKit::start(5).await;
    let domain = domain(&kit);
    let dana = add_user(
        &kit,
        json!({
            "displayName": "Dana Direct",
            "userPrincipalName": format!("dana.direct@{domain}"),
            "businessPhones": ["+1 425 555 0199"],
            "mobilePhone": "+1 425 555 0198",
            "teams": true,
        }),
    )
    .await;
    let hostile = add_user(
        &kit,
        json!({
            "displayName": HOSTILE,
            "userPrincipalName": format!("hostile@{domain}"),
        }),
    )
    .await;
    // The directory has both once its delta poll ran.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let direct_dial = loop {
        let response = kit.get("/v1/directory?search=Dana%20Direct").await;
        let status = response.status().as_u16();
        let page: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(user) = page["users"]
            .as_array()
            .and_then(|users| users.iter().find(|u| u["id"] == json!(dana)))
        {
            break user["direct_dial"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET /v1/directory never listed Dana Direct (last answer {status}: {page})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let direct_dial = direct_dial
        .as_str()
        .expect("Dana Direct has a direct-dial number")
        .to_string();

    let browser = Browser::start(&chromium, 1280, 900).await;
    browser.goto(&format!("{}/", kit.base)).await;
    browser.wait_for("#token").await;
    watch_for_script(&browser).await;
    sign_in(&browser, &kit.token).await;
    browser.wait_for("#agents-body").await;
    browser.click("#tab-directory").await;
    browser.wait_for("#directory-body tr").await;

    // The search narrows to the one user.
    browser.type_into("#directory-search", "Dana Direct").await;
    assert!(
        browser
            .until(
                "const rows = document.querySelectorAll('#directory-body tr[data-user-id]');\
                 return rows.length === 1 && rows[0].dataset.userId === arguments[0];",
                json!([dana]),
                PATIENCE
            )
            .await,
        "the directory search did not narrow to Dana Direct"
    );
    // Click-to-call carries the directory's number.
    let href = browser
        .script(
            "const a = document.querySelector('#directory-body tr[data-user-id] a.tel');\
             return a ? a.getAttribute('href') : null;",
            json!([]),
        )
        .await;
    assert_eq!(href, json!(format!("tel:{direct_dial}")));
    screenshot(&browser, "directory").await;

    // A hostile name in the directory is text, too.
    browser.clear("#directory-search").await;
    browser.type_into("#directory-search", "onerror").await;
    assert!(
        browser
            .until(
                "const rows = document.querySelectorAll('#directory-body tr[data-user-id]');\
                 return rows.length === 1 && rows[0].dataset.userId === arguments[0]\
                   && rows[0].querySelector('.name').textContent === arguments[1];",
                json!([hostile, HOSTILE]),
                PATIENCE
            )
            .await,
        "the hostile directory name was not shown as text"
    );
    no_script_ran(&browser).await;
    drop(browser);
    kit.stop().await;
}

/// The health view names a permission the app lacks, what it stops and
/// links the tenant's admin consent; once consent is granted it says all
/// are granted, without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_view_names_a_missing_permission_and_links_consent() {
    let Some(chromium) = browser_or_skip("board_browser") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let kit = DaemonKit::start_sim(
        presence_sync::sim::SimOptions {
            roles: vec!["Presence.Read.All".into(), "User.Read.All".into()],
            ..common::daemon_kit::sim_options(3)
        },
        "",
        presence_sync::daemon::DaemonOptions {
            permission_recheck: Duration::from_millis(300),
            ..options()
        },
    )
    .await;
    let browser = Browser::start(&chromium, 1280, 900).await;
    browser.goto(&format!("{}/", kit.base)).await;
    browser.wait_for("#token").await;
    watch_for_script(&browser).await;
    sign_in(&browser, &kit.token).await;
    browser.click("#tab-health").await;
    let consent = format!(
        "{}/{}/adminconsent?client_id={}",
        kit.sim.base_url, kit.sim.tenant_id, kit.sim.client_id
    );
    assert!(
        browser
            .until(
                "const item = document.querySelector('#health-graph li[data-permission=\"Presence.ReadWrite.All\"]');\
                 const link = document.querySelector('#health-graph a.consent');\
                 return item !== null && item.textContent.includes('cc to teams')\
                   && link !== null && link.getAttribute('href').startsWith(arguments[0]);",
                json!([consent]),
                PATIENCE
            )
            .await,
        "the missing permission and the consent link did not show"
    );
    assert!(
        browser
            .until(
                "return [...document.querySelectorAll('#health-errors li')]\
                   .some((li) => li.textContent.includes('Presence.ReadWrite.All'));",
                json!([]),
                PATIENCE
            )
            .await,
        "the missing permission is not among the last errors"
    );
    screenshot(&browser, "health-permissions").await;

    let granted = kit
        .http
        .post(format!("{}/_sim/roles", kit.sim.base_url))
        .json(&json!({"grant": ["Presence.ReadWrite.All"]}))
        .send()
        .await
        .expect("POST /_sim/roles");
    assert_eq!(granted.status(), 200);
    assert!(
        browser
            .until(
                "const dds = [...document.querySelectorAll('#health-graph dd')];\
                 return dds.some((dd) => dd.textContent.startsWith('all granted'))\
                   && document.querySelector('#health-graph a.consent') === null;",
                json!([]),
                PATIENCE
            )
            .await,
        "granting consent did not show on the board without a reload"
    );
    no_script_ran(&browser).await;
}

/// The `cluster` section of `/readyz`, or `null` without one.
async fn readyz_cluster(kit: &DaemonKit) -> Value {
    let response = kit
        .http
        .get(format!("{}/readyz", kit.base))
        .send()
        .await
        .expect("GET /readyz");
    let body: Value = response.json().await.expect("a JSON readiness");
    body["cluster"].clone()
}

/// A daemon running a term as a cluster's active node (over the in-memory
/// commit log) shows the Cluster card: its role, the lease holder, its log
/// position and lag, NATS, every node; a lag that lasts and a NATS failure
/// are shown as problems. Its writes reach the log and move the position
/// `/readyz` shows. A single daemon keeps the card hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_card_shows_on_an_active_node_and_stays_hidden_alone() {
    use std::sync::Arc;

    use presence_sync::api::model::{LeaseHolderOut, NodeOut};
    use presence_sync::cluster::CommitLog;
    use presence_sync::cluster::gate::Gate;
    use presence_sync::cluster::memory_log::MemoryLog;
    use presence_sync::cluster::replicated::ReplicatedStore;
    use presence_sync::daemon::DaemonOptions;
    use presence_sync::daemon::cluster::status::ClusterStatus;
    use presence_sync::daemon::cluster::term::{ActiveTerm, ClusterStore};

    let Some(chromium) = browser_or_skip("board_browser") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;

    let log = MemoryLog::new();
    let status = Arc::new(ClusterStatus::new("node-a", "contoso"));
    status.took_over();
    status.set_holder(Some(LeaseHolderOut {
        node_id: "node-a".into(),
        api_url: "http://node-a.example:8080".into(),
        since: chrono::Utc::now(),
    }));
    status.set_nats_connection(true, Some("nats://10.0.0.11:4222".into()));
    let replicate_log: Arc<dyn CommitLog> = log.clone();
    let term = ActiveTerm {
        gate: Arc::new(Gate::open()),
        // As the node runner does on an empty log: the first record, then
        // the daemon over the replicated store.
        replicate: Arc::new(move |sled| {
            let store = ReplicatedStore::new(sled, Arc::clone(&replicate_log))?;
            store.genesis()?;
            Ok(Arc::new(store) as Arc<dyn ClusterStore>)
        }),
        status: Arc::clone(&status),
        events: None,
        snapshots: None,
        snapshot_interval: Duration::from_secs(600),
    };
    let kit = DaemonKit::start_opts(
        3,
        SYNC_AND_QUEUE,
        DaemonOptions {
            cluster: Some(term),
            ..options()
        },
    )
    .await;
    let position = |kit: &DaemonKit| {
        kit.daemon
            .as_ref()
            .and_then(|d| d.cluster_position())
            .expect("the daemon runs as the active node")
    };
    // The node runner keeps the status's position; here the test does.
    let first = position(&kit);
    assert!(first >= 1, "the first record was not committed");
    status.set_position(first);
    let cluster = readyz_cluster(&kit).await;
    assert_eq!(cluster["role"], "active", "{cluster}");
    assert_eq!(cluster["position"], json!(first), "{cluster}");

    // An agent written through the API goes to the log first.
    let r = kit
        .put(
            "/v1/agents/agent-a",
            json!({"teams_user": kit.user(0).1, "queues": [{"queue": "sales"}]}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let after = position(&kit);
    assert!(after > first, "the agent's write did not advance the log");
    assert_eq!(
        log.last(),
        after,
        "the log does not end at the store's position"
    );
    status.set_position(after);
    let cluster = readyz_cluster(&kit).await;
    assert_eq!(cluster["role"], "active", "{cluster}");
    assert_eq!(cluster["position"], json!(after), "{cluster}");
    assert_eq!(cluster["lag_records"], json!(0), "{cluster}");

    let now = chrono::Utc::now();
    status.set_nodes(vec![
        NodeOut {
            node_id: "node-a".into(),
            role: "active".into(),
            position: after,
            api_url: "http://node-a.example:8080".into(),
            at: now,
        },
        NodeOut {
            node_id: "node-b".into(),
            role: "standby".into(),
            position: first,
            api_url: "http://node-b.example:8080".into(),
            at: now,
        },
    ]);

    let browser = Browser::start(&chromium, 1280, 1100).await;
    browser.goto(&format!("{}/", kit.base)).await;
    browser.wait_for("#token").await;
    watch_for_script(&browser).await;
    sign_in(&browser, VIEWER_TOKEN).await;
    browser.wait_for("#agents-body").await;
    browser.click("#tab-health").await;
    let behind = after - first;
    assert!(
        browser
            .until(
                "const card = document.getElementById('health-cluster-card');\
                 const badge = document.getElementById('health-cluster-role');\
                 const text = card.textContent;\
                 const b = document.querySelector('#cluster-nodes-body tr[data-node-id=\"node-b\"]');\
                 return !card.hidden && badge.dataset.role === 'active'\
                   && badge.classList.contains('active') && badge.textContent === 'Active'\
                   && text.includes('node-a at http://node-a.example:8080')\
                   && text.includes(`${arguments[0]} of ${arguments[0]}`)\
                   && card.querySelector('.cluster-nats').textContent === 'Connected to nats://10.0.0.11:4222'\
                   && card.querySelector('.cluster-lag').textContent === 'none'\
                   && document.querySelectorAll('#cluster-nodes-body tr[data-node-id]').length === 2\
                   && b !== null && b.children[1].textContent === 'standby'\
                   && b.children[3].textContent.startsWith(String(arguments[1]) + ' record');",
                json!([after, behind]),
                PATIENCE
            )
            .await,
        "the cluster card did not show this node, the lease holder, NATS and the nodes"
    );
    // The standby that stays behind is highlighted after a few seconds.
    assert!(
        browser
            .until(
                "const b = document.querySelector('#cluster-nodes-body tr[data-node-id=\"node-b\"]');\
                 const a = document.querySelector('#cluster-nodes-body tr[data-node-id=\"node-a\"]');\
                 return b.children[3].classList.contains('lagging')\
                   && !a.children[3].classList.contains('lagging');",
                json!([]),
                PATIENCE
            )
            .await,
        "a node behind the log for seconds was not highlighted"
    );
    browser
        .script(
            "document.getElementById('health-cluster-card').scrollIntoView();",
            json!([]),
        )
        .await;
    screenshot(&browser, "health-cluster").await;

    // NATS fails, this node falls behind the log, and it steps down: the
    // card says so, in red where it is a problem.
    status.nats_failed("nats: connection refused <b>10.0.0.11</b>");
    status.set_nats_connection(false, None);
    status.set_log_last(after + 3);
    status.stepped_down("another node took the lease");
    assert!(
        browser
            .until(
                "const card = document.getElementById('health-cluster-card');\
                 const badge = document.getElementById('health-cluster-role');\
                 const nats = card.querySelector('.cluster-nats');\
                 const error = nats.querySelector('.error');\
                 const lag = card.querySelector('.cluster-lag');\
                 return badge.dataset.role === 'standby' && !badge.classList.contains('active')\
                   && error !== null && error.textContent === arguments[0]\
                   && nats.textContent.startsWith('Not connected')\
                   && lag.textContent.startsWith('3 records behind')\
                   && lag.classList.contains('lagging')\
                   && card.textContent.includes('another node took the lease');",
                json!(["nats: connection refused <b>10.0.0.11</b>"]),
                PATIENCE
            )
            .await,
        "the NATS failure, the lag and the step-down did not show"
    );
    let cluster = readyz_cluster(&kit).await;
    assert_eq!(
        (&cluster["role"], &cluster["step_downs"]),
        (&json!("standby"), &json!(1))
    );
    no_script_ran(&browser).await;
    browser
        .script(
            "document.getElementById('health-cluster-card').scrollIntoView();",
            json!([]),
        )
        .await;
    screenshot(&browser, "health-cluster-standby").await;
    drop(browser);
    kit.stop().await;

    // A single daemon: no cluster, no card.
    let kit = DaemonKit::start(3).await;
    assert_eq!(readyz_cluster(&kit).await, Value::Null);
    let browser = Browser::start(&chromium, 1280, 900).await;
    browser.goto(&format!("{}/", kit.base)).await;
    browser.wait_for("#token").await;
    sign_in(&browser, VIEWER_TOKEN).await;
    browser.wait_for("#agents-body").await;
    browser.click("#tab-health").await;
    assert!(
        browser
            .until(
                "return document.querySelectorAll('#health-graph dt').length > 3\
                 && document.querySelectorAll('#tasks-body tr').length > 0;",
                json!([]),
                PATIENCE
            )
            .await,
        "the health view stayed empty"
    );
    assert_eq!(
        browser
            .script(
                "return [document.getElementById('health-cluster-card').hidden,\
                   document.querySelectorAll('#cluster-nodes-body tr').length];",
                json!([])
            )
            .await,
        json!([true, 0])
    );
    drop(browser);
    kit.stop().await;
}
