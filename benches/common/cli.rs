//! What the process-level benchmarks (`load`, `cluster`) share about how
//! they are run: a smoke run under `cargo test`, the full run under
//! `cargo bench` (which passes `--bench`), knobs from variables and flags,
//! and a small async runtime.

/// Whether cargo runs the target as a benchmark (`cargo bench` passes
/// `--bench`) rather than as a smoke run under `cargo test`.
pub fn is_bench(args: &[String]) -> bool {
    args.iter().any(|a| a == "--bench")
}

/// Hands every knob to `set`: first the variables (`PREFIX_KEY`, dashes
/// as underscores) of `keys`, then the flags (`--key value` or
/// `--key=value`; a flag of `switches` alone means `1`), so flags win.
/// `--bench` and arguments without `--` (a name filter cargo passes on:
/// these targets have one run) are passed over.
pub fn apply(
    prefix: &str,
    keys: &[&str],
    switches: &[&str],
    args: &[String],
    mut set: impl FnMut(&str, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for key in keys {
        let var = format!("{prefix}_{}", key.replace('-', "_").to_ascii_uppercase());
        if let Ok(value) = std::env::var(&var) {
            set(key, &value)?;
        }
    }
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        match flag.split_once('=') {
            _ if flag == "bench" => {}
            _ if switches.contains(&flag) => set(flag, "1")?,
            Some((key, value)) => set(key, value)?,
            None => {
                let value = rest
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--{flag} needs a value"))?;
                set(flag, value)?;
            }
        }
    }
    Ok(())
}

/// A multi-threaded runtime on two workers, or the exit code after saying
/// (as `tool`) why there is none.
pub fn runtime(tool: &str) -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{tool}: no async runtime: {e}");
            std::process::ExitCode::FAILURE
        })
}
