use proptest::prelude::*;

use super::*;

#[test]
fn renders_a_small_registry() {
    let registry = Registry::new();
    let requests = registry
        .counter_vec("app_requests_total", "Requests served.", ["route", "code"])
        .unwrap();
    let depth = registry.gauge("app_queue_depth", "Items waiting.").unwrap();
    let latency = registry
        .histogram(
            "app_latency_seconds",
            "Time per request.",
            &[0.25, 1.0, 2.5],
        )
        .unwrap();
    let idle = registry
        .counter_vec("app_idle_total", "Nothing yet.", ["kind"])
        .unwrap();
    requests.with(["/v1/agents", "200"]).inc_by(3);
    requests.with(["/healthz", "200"]).inc();
    depth.set(7.0);
    depth.dec();
    for value in [0.125, 0.25, 0.75, 3.0] {
        latency.observe(value);
    }
    let _ = idle;
    assert_eq!(
        registry.render(),
        "\
# HELP app_requests_total Requests served.
# TYPE app_requests_total counter
app_requests_total{route=\"/healthz\",code=\"200\"} 1
app_requests_total{route=\"/v1/agents\",code=\"200\"} 3
# HELP app_queue_depth Items waiting.
# TYPE app_queue_depth gauge
app_queue_depth 6
# HELP app_latency_seconds Time per request.
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le=\"0.25\"} 2
app_latency_seconds_bucket{le=\"1\"} 3
app_latency_seconds_bucket{le=\"2.5\"} 3
app_latency_seconds_bucket{le=\"+Inf\"} 4
app_latency_seconds_sum 4.125
app_latency_seconds_count 4
# HELP app_idle_total Nothing yet.
# TYPE app_idle_total counter
"
    );
}

#[test]
fn escapes_label_values_and_help() {
    let registry = Registry::new();
    let family = registry
        .gauge_vec("g", "Back\\slash\nand \"quotes\".", ["v"])
        .unwrap();
    family.with(["a\\b\"c\nd"]).set(1.5);
    family.with(["x"]).set(f64::NEG_INFINITY);
    assert_eq!(
        registry.render(),
        "# HELP g Back\\\\slash\\nand \"quotes\".\n# TYPE g gauge\n\
         g{v=\"a\\\\b\\\"c\\nd\"} 1.5\ng{v=\"x\"} -Inf\n"
    );
    let samples = parse_text(&registry.render()).unwrap();
    assert_eq!(samples[0].labels["v"], "a\\b\"c\nd");
    assert_eq!(samples[1].value, f64::NEG_INFINITY);
}

#[test]
fn histogram_buckets_are_cumulative_and_le_inclusive() {
    let registry = Registry::new();
    let family = registry
        .histogram_vec("h_seconds", "h", ["direction"], &[1.0, 2.0, 4.0])
        .unwrap();
    let histogram = family.with(["up"]);
    for value in [1.0, 1.0, 1.5, 2.0, 3.9, 4.0, 4.1, f64::NAN, -1.0] {
        histogram.observe(value);
    }
    histogram.observe_duration(Duration::from_millis(500));
    let samples = parse_text(&registry.render()).unwrap();
    let bucket = |le: &str| {
        find(
            &samples,
            "h_seconds_bucket",
            &[("direction", "up"), ("le", le)],
        )
        .unwrap()
        .value
    };
    // NaN is dropped; -1 and 0.5 fall in the first bucket.
    assert_eq!(bucket("1"), 4.0);
    assert_eq!(bucket("2"), 6.0);
    assert_eq!(bucket("4"), 8.0);
    assert_eq!(bucket("+Inf"), 9.0);
    assert_eq!(find(&samples, "h_seconds_count", &[]).unwrap().value, 9.0);
    let sum = find(&samples, "h_seconds_sum", &[]).unwrap().value;
    assert!((sum - 17.0).abs() < 1e-9, "{sum}");
    assert_eq!(histogram.count(), 9);
    // The `le` label comes last, after the family's own.
    assert!(
        registry
            .render()
            .contains("h_seconds_bucket{direction=\"up\",le=\"2\"} 6\n")
    );
}

#[test]
fn handles_share_one_value() {
    let registry = Registry::new();
    let family = registry.counter_vec("c_total", "c", ["k"]).unwrap();
    let first = family.with(["a"]);
    let again = family.clone().with(["a"]);
    first.inc();
    again.inc_by(2);
    assert_eq!(first.get(), 3);
    assert_eq!(family.with(["b"]).get(), 0);
    let clone = registry.clone();
    assert!(clone.render().contains("c_total{k=\"a\"} 3\n"));
}

#[test]
fn bad_definitions_are_refused() {
    let registry = Registry::new();
    registry.counter("taken_total", "x").unwrap();
    assert_eq!(
        registry.counter("taken_total", "x").unwrap_err(),
        MetricsError::Duplicate("taken_total".into())
    );
    registry.histogram("lat", "x", &[1.0]).unwrap();
    assert_eq!(
        registry.gauge("lat_count", "x").unwrap_err(),
        MetricsError::Duplicate("lat_count".into())
    );
    assert!(matches!(
        registry.counter("9lives", "x"),
        Err(MetricsError::InvalidName(_))
    ));
    assert!(matches!(
        registry.counter("has-dash", "x"),
        Err(MetricsError::InvalidName(_))
    ));
    assert!(matches!(
        registry.counter_vec("a", "x", ["__reserved"]),
        Err(MetricsError::InvalidLabel { .. })
    ));
    assert!(matches!(
        registry.counter_vec("b", "x", ["k", "k"]),
        Err(MetricsError::DuplicateLabel { .. })
    ));
    assert!(matches!(
        registry.histogram_vec("c", "x", ["le"], &[1.0]),
        Err(MetricsError::InvalidLabel { .. })
    ));
    for buckets in [
        &[1.0, 1.0][..],
        &[2.0, 1.0],
        &[1.0, f64::INFINITY],
        &[f64::NAN],
    ] {
        assert!(matches!(
            registry.histogram("d", "x", buckets),
            Err(MetricsError::InvalidBuckets(_))
        ));
    }
    // Refused definitions took no name.
    registry.histogram("d", "x", &[]).unwrap();
}

#[test]
fn daemon_metrics_render_every_name_at_start() {
    let registry = Registry::new();
    let metrics = DaemonMetrics::register(&registry).unwrap();
    assert!(DaemonMetrics::register(&registry).is_err());
    let text = registry.render();
    let samples = parse_text(&text).unwrap();
    assert!(samples.iter().all(|s| s.name.starts_with("presence_sync_")));
    for (name, labels) in [
        ("presence_sync_graph_throttled_total", &[][..]),
        ("presence_sync_graph_budget_in_use", &[]),
        ("presence_sync_debounced_total", &[]),
        ("presence_sync_echo_suppressed_total", &[]),
        ("presence_sync_loop_suspensions_total", &[]),
        ("presence_sync_teams_overrides_total", &[]),
        ("presence_sync_teams_outranked_total", &[]),
        ("presence_sync_cc_requests_total", &[]),
        ("presence_sync_outbox_depth", &[]),
        ("presence_sync_agents", &[("linked", "true")]),
        ("presence_sync_agents", &[("linked", "false")]),
        ("presence_sync_events_committed_total", &[]),
        ("presence_sync_store_commit_seconds_count", &[]),
        ("presence_sync_mapping_reloads_total", &[("outcome", "ok")]),
        (
            "presence_sync_mapping_reloads_total",
            &[("outcome", "error")],
        ),
        (
            "presence_sync_propagation_seconds_count",
            &[("direction", "cc_to_teams")],
        ),
        (
            "presence_sync_propagation_seconds_count",
            &[("direction", "teams_to_cc")],
        ),
    ] {
        assert_eq!(
            find(&samples, name, labels).map(|s| s.value),
            Some(0.0),
            "{name} {labels:?}"
        );
    }
    for name in [
        "presence_sync_graph_calls_total",
        "presence_sync_teams_writes_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} counter\n")), "{name}");
    }
    let buckets = |name: &str| {
        samples
            .iter()
            .filter(|s| {
                s.name == name && s.labels.get("direction").is_none_or(|d| d == "cc_to_teams")
            })
            .map(|s| s.labels["le"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        buckets("presence_sync_propagation_seconds_bucket"),
        [
            "0.1", "0.5", "1", "2.5", "5", "10", "15", "20", "30", "60", "120", "300", "+Inf"
        ]
    );
    assert_eq!(
        buckets("presence_sync_store_commit_seconds_bucket"),
        [
            "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
            "1", "+Inf"
        ]
    );

    metrics.propagation(Direction::TeamsToCc).observe(12.0);
    metrics.teams_write(TeamsWriteKind::Keepalive, "ok").inc();
    metrics
        .graph_calls
        .with(["set_presence", "throttled"])
        .inc();
    metrics.agents_linked(true).set(40.0);
    let samples = parse_text(&registry.render()).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| find(&samples, name, labels).unwrap().value;
    assert_eq!(
        value(
            "presence_sync_propagation_seconds_bucket",
            &[("direction", "teams_to_cc"), ("le", "15")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "presence_sync_propagation_seconds_bucket",
            &[("direction", "teams_to_cc"), ("le", "10")]
        ),
        0.0
    );
    assert_eq!(
        value(
            "presence_sync_teams_writes_total",
            &[("kind", "keepalive"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "presence_sync_graph_calls_total",
            &[("endpoint", "set_presence"), ("outcome", "throttled")]
        ),
        1.0
    );
    assert_eq!(value("presence_sync_agents", &[("linked", "true")]), 40.0);
}

#[test]
fn parser_reads_comments_timestamps_and_special_values() {
    let samples = parse_text(
        "# a comment\n\n  up 1 1700000000000\nx{a=\"1\" , b = \"2\",} NaN\ny +Inf\nz 1e3\n",
    )
    .unwrap();
    assert_eq!(samples.len(), 4);
    assert_eq!(samples[0].value, 1.0);
    assert_eq!(samples[1].labels.len(), 2);
    assert!(samples[1].value.is_nan());
    assert_eq!(samples[2].value, f64::INFINITY);
    assert_eq!(samples[3].value, 1000.0);
}

#[test]
fn parser_rejects_malformed_lines_with_their_number() {
    for (text, line) in [
        ("ok 1\nbad\n", 2),
        ("x{a=\"1\" 1\n", 1),
        ("x{a=1} 1\n", 1),
        ("x{a=\"\\t\"} 1\n", 1),
        ("x{a=\"1\",a=\"2\"} 1\n", 1),
        ("x one\n", 1),
        ("x 1 2 3\n", 1),
        ("x 1 soon\n", 1),
        ("{a=\"1\"} 1\n", 1),
        ("x{a=\"1\"}1\n", 1),
        ("x inf\n", 1),
    ] {
        let error = parse_text(text).unwrap_err();
        assert_eq!(error.line, line, "{text:?}: {error}");
    }
}

fn render_one(value: &str) -> String {
    let registry = Registry::new();
    let family = registry.counter_vec("c_total", "c", ["v", "w"]).unwrap();
    family.with([value, "after"]).inc_by(5);
    registry.render()
}

proptest! {
    #[test]
    fn any_label_value_reads_back_the_same(value in any::<String>()) {
        let text = render_one(&value);
        let samples = parse_text(&text).unwrap();
        prop_assert_eq!(samples.len(), 1);
        let sample = &samples[0];
        prop_assert_eq!(&sample.name, "c_total");
        prop_assert_eq!(&sample.labels["v"], &value);
        prop_assert_eq!(&sample.labels["w"], "after");
        prop_assert_eq!(sample.value, 5.0);
        // One sample is one line, whatever the value holds.
        prop_assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn label_values_made_of_escapes_read_back(
        value in proptest::collection::vec(prop_oneof![Just('\\'), Just('"'), Just('\n'), Just('n'), Just('}'), Just(',')], 0..24)
    ) {
        let value: String = value.into_iter().collect();
        let samples = parse_text(&render_one(&value)).unwrap();
        prop_assert_eq!(&samples[0].labels["v"], &value);
    }

    #[test]
    fn the_parser_never_panics(text in "(?s).{0,200}") {
        let _ = parse_text(&text);
    }

    #[test]
    fn the_parser_never_panics_on_near_misses(
        name in "[a-z_]{1,5}",
        inside in "[a-z=\"\\\\,{} ]{0,20}",
        value in "[-+0-9.eEInfNa ]{0,10}",
    ) {
        let _ = parse_text(&format!("{name}{{{inside}}} {value}\n"));
    }
}
