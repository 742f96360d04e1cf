//! The systemd notify protocol (`sd_notify`), without libsystemd.
//!
//! With `Type=notify` systemd waits for `READY=1` before it counts the
//! service as started, and with `WatchdogSec=` it kills the service when the
//! pings stop. Messages are `KEY=value` lines in one datagram to the socket
//! named by `$NOTIFY_SOCKET`: a path, or `@name` for a Linux abstract socket.
//! Outside systemd the variable is unset and every call does nothing.
//!
//! The sends are blocking but local and bounded by [`SEND_TIMEOUT`], so the
//! daemon may call them from async code.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use thiserror::Error;

use crate::config::Environment;

/// The variable naming systemd's notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// The watchdog timeout in microseconds, set with `WatchdogSec=`.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The process the watchdog timeout is meant for.
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// How long a send may wait for room in systemd's receive queue. A queue
/// that stays full means systemd itself is stuck; the daemon must not hang
/// with it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error(
        "${NOTIFY_SOCKET} is `{address}`, which is neither a socket path nor an abstract socket (`@name`): {reason}"
    )]
    UnsupportedAddress { address: String, reason: String },
    #[error("cannot open a socket to notify systemd: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot notify systemd at `{address}` ({message}): {source}")]
    Send {
        address: String,
        message: String,
        #[source]
        source: io::Error,
    },
    #[error("notifying systemd at `{address}` sent {sent} of {len} bytes")]
    Truncated {
        address: String,
        sent: usize,
        len: usize,
    },
}

/// Sends state changes to systemd. Cheap to clone; one socket per message,
/// as libsystemd does, since messages are rare (a watchdog ping every few
/// seconds at most).
#[derive(Clone)]
pub struct Notifier {
    target: Target,
}

#[derive(Clone)]
enum Target {
    /// Not started by systemd with a notify socket.
    Disabled,
    Socket {
        address: SocketAddr,
        /// As given, for error messages.
        shown: String,
    },
    /// `$NOTIFY_SOCKET` was set but unusable: every send reports it, so the
    /// daemon learns of it at its first `ready()` rather than at start-up
    /// in code that cannot tell an admin why.
    Unusable { address: String, reason: String },
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Disabled => f.write_str("Notifier(disabled)"),
            Target::Socket { shown, .. } => write!(f, "Notifier({shown})"),
            Target::Unusable { address, .. } => write!(f, "Notifier(unusable: {address})"),
        }
    }
}

impl Notifier {
    /// The notifier for this process's `$NOTIFY_SOCKET`.
    pub fn from_env() -> Self {
        Notifier::from_environment(&Environment::from_process())
    }

    /// The notifier for `$NOTIFY_SOCKET` in `env`.
    pub fn from_environment(env: &Environment) -> Self {
        match env.get(NOTIFY_SOCKET) {
            Some(value) if !value.is_empty() => Notifier::from_address(value),
            _ => Notifier::disabled(),
        }
    }

    /// A notifier for a socket address as systemd writes it: an absolute
    /// path, or `@name` for an abstract socket.
    pub fn from_address(value: &OsStr) -> Self {
        let bytes = value.as_bytes();
        let shown = value.to_string_lossy().into_owned();
        let resolved = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(Path::new(value)),
            Some(b'@') => abstract_address(&bytes[1..]),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only path and abstract sockets are supported",
            )),
        };
        match resolved {
            Ok(address) => Notifier {
                target: Target::Socket { address, shown },
            },
            Err(error) => Notifier {
                target: Target::Unusable {
                    address: shown,
                    reason: error.to_string(),
                },
            },
        }
    }

    /// A notifier for a socket at `path`; tests bind one in a temp dir.
    pub fn to_path(path: impl AsRef<Path>) -> Self {
        Notifier::from_address(path.as_ref().as_os_str())
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier {
            target: Target::Disabled,
        }
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.target, Target::Disabled)
    }

    /// Start-up is complete: the store is open and the listener accepts.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.send("READY=1")
    }

    /// A reload (SIGHUP) has begun. Send [`ready`](Self::ready) when it is
    /// done, successful or not. `MONOTONIC_USEC` lets systemd ≥ 253 match
    /// this message to the reload it asked for (`Type=notify-reload`).
    pub fn reloading(&self) -> Result<(), NotifyError> {
        match monotonic_usec() {
            Some(usec) => self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}")),
            None => self.send("RELOADING=1"),
        }
    }

    /// Shutdown has begun (SIGTERM); draining follows.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1")
    }

    /// A one-line status for `systemctl status`. Line breaks and other
    /// control characters become spaces: a newline would start a message
    /// field of its own (`READY=1`) and the text may carry outside input.
    pub fn status(&self, text: &str) -> Result<(), NotifyError> {
        let line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={line}"))
    }

    /// The daemon's liveness check passed; systemd restarts the watchdog
    /// timer.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=1")
    }

    /// The liveness check failed: systemd treats the service as hung now
    /// rather than at the end of the timeout.
    pub fn watchdog_trigger(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=trigger")
    }

    fn send(&self, message: &str) -> Result<(), NotifyError> {
        let (address, shown) = match &self.target {
            Target::Disabled => return Ok(()),
            Target::Unusable { address, reason } => {
                return Err(NotifyError::UnsupportedAddress {
                    address: address.clone(),
                    reason: reason.clone(),
                });
            }
            Target::Socket { address, shown } => (address, shown),
        };
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(NotifyError::Socket)?;
        let sent = socket
            .send_to_addr(message.as_bytes(), address)
            .map_err(|source| NotifyError::Send {
                address: shown.clone(),
                message: message.replace('\n', " "),
                source,
            })?;
        if sent != message.len() {
            return Err(NotifyError::Truncated {
                address: shown.clone(),
                sent,
                len: message.len(),
            });
        }
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist on Linux only",
    ))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares
/// `MONOTONIC_USEC` with. `Instant` reads the same clock on Linux but does
/// not expose its value.
fn monotonic_usec() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec that outlives the call,
    // and CLOCK_MONOTONIC is a clock every supported kernel has.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if result != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    secs.checked_mul(1_000_000)?.checked_add(nanos / 1_000)
}

/// How often to ping the watchdog: half of `WatchdogSec=`, as systemd
/// advises, so one late ping is not fatal. `None` when the watchdog is off
/// or meant for another process.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_in(&Environment::from_process(), std::process::id())
}

/// [`watchdog_interval`] from `env`, for the process `pid`.
///
/// `WATCHDOG_PID`, when set, must be `pid`: a child that inherited the
/// variables must not ping for its parent. Garbage values count as "off".
pub fn watchdog_interval_in(env: &Environment, pid: u32) -> Option<Duration> {
    if let Some(target) = env.get(WATCHDOG_PID) {
        let target: u32 = target.to_str()?.parse().ok()?;
        if target != pid {
            return None;
        }
    }
    let usec: u64 = env.get(WATCHDOG_USEC)?.to_str()?.parse().ok()?;
    if usec == 0 {
        return None;
    }
    // Rounded up, so a 1 µs timeout still gives a period a timer accepts.
    Some(Duration::from_micros(usec.div_ceil(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound socket in a temp dir and a notifier pointed at it.
    fn listener() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        (dir, socket, Notifier::to_path(&path))
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 4096];
        let len = socket.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..len].to_vec()).unwrap()
    }

    #[test]
    fn each_call_sends_its_exact_datagram() {
        let (_dir, socket, notifier) = listener();
        assert!(notifier.is_enabled());
        notifier.ready().unwrap();
        assert_eq!(receive(&socket), "READY=1");
        notifier.stopping().unwrap();
        assert_eq!(receive(&socket), "STOPPING=1");
        notifier.status("syncing 120 agents").unwrap();
        assert_eq!(receive(&socket), "STATUS=syncing 120 agents");
        notifier.watchdog().unwrap();
        assert_eq!(receive(&socket), "WATCHDOG=1");
        notifier.watchdog_trigger().unwrap();
        assert_eq!(receive(&socket), "WATCHDOG=trigger");
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let (_dir, socket, notifier) = listener();
        let before = monotonic_usec().unwrap();
        notifier.reloading().unwrap();
        let after = monotonic_usec().unwrap();
        let message = receive(&socket);
        let (first, second) = message.split_once('\n').unwrap();
        assert_eq!(first, "RELOADING=1");
        let usec: u64 = second
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(before <= usec && usec <= after, "{before} {usec} {after}");
    }

    #[test]
    fn status_text_cannot_inject_fields() {
        let (_dir, socket, notifier) = listener();
        notifier.status("agent x\nREADY=1\r\tdone").unwrap();
        assert_eq!(receive(&socket), "STATUS=agent x READY=1  done");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn abstract_sockets_are_reached_by_at_names() {
        let name = format!("presence-sync-test-{}", std::process::id());
        let address = abstract_address(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let env: Environment = [(NOTIFY_SOCKET, format!("@{name}"))].into_iter().collect();
        let notifier = Notifier::from_environment(&env);
        notifier.ready().unwrap();
        assert_eq!(receive(&socket), "READY=1");
    }

    #[test]
    fn without_notify_socket_every_call_is_a_no_op() {
        for env in [
            Environment::default(),
            [(NOTIFY_SOCKET, "")].into_iter().collect(),
        ] {
            let notifier = Notifier::from_environment(&env);
            assert!(!notifier.is_enabled());
            notifier.ready().unwrap();
            notifier.reloading().unwrap();
            notifier.stopping().unwrap();
            notifier.status("x").unwrap();
            notifier.watchdog().unwrap();
            notifier.watchdog_trigger().unwrap();
        }
    }

    #[test]
    fn unusable_addresses_are_reported_on_send() {
        for address in ["vsock:2:1234", "relative/path"] {
            let env: Environment = [(NOTIFY_SOCKET, address)].into_iter().collect();
            let error = Notifier::from_environment(&env).ready().unwrap_err();
            assert!(
                matches!(&error, NotifyError::UnsupportedAddress { address: a, .. } if a == address),
                "{error}"
            );
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(matches!(
            Notifier::to_path(&long).ready(),
            Err(NotifyError::UnsupportedAddress { .. })
        ));
    }

    #[test]
    fn a_socket_nobody_listens_on_is_a_send_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        let error = Notifier::to_path(&path).ready().unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, NotifyError::Send { .. }), "{text}");
        assert!(text.contains("(READY=1)"), "{text}");
    }

    fn interval(vars: &[(&str, &str)], pid: u32) -> Option<Duration> {
        let env: Environment = vars.iter().copied().collect();
        watchdog_interval_in(&env, pid)
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_our_pid() {
        assert_eq!(
            interval(&[(WATCHDOG_USEC, "30000000"), (WATCHDOG_PID, "42")], 42),
            Some(Duration::from_secs(15))
        );
        // No WATCHDOG_PID: the timeout is ours (systemd sets both, but
        // sd_watchdog_enabled accepts this).
        assert_eq!(
            interval(&[(WATCHDOG_USEC, "3")], 42),
            Some(Duration::from_micros(2))
        );
        assert_eq!(
            interval(&[(WATCHDOG_USEC, "1")], 42),
            Some(Duration::from_micros(1))
        );
    }

    #[test]
    fn watchdog_interval_ignores_other_pids_and_garbage() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[(WATCHDOG_PID, "42")],
            &[(WATCHDOG_USEC, "30000000"), (WATCHDOG_PID, "43")],
            &[(WATCHDOG_USEC, "30000000"), (WATCHDOG_PID, "forty-two")],
            &[(WATCHDOG_USEC, "30000000"), (WATCHDOG_PID, "")],
            &[(WATCHDOG_USEC, "0"), (WATCHDOG_PID, "42")],
            &[(WATCHDOG_USEC, "-5")],
            &[(WATCHDOG_USEC, "30s")],
            &[(WATCHDOG_USEC, " 30000000")],
            &[(WATCHDOG_USEC, "")],
            &[(WATCHDOG_USEC, "99999999999999999999999")],
        ];
        for vars in cases {
            assert_eq!(interval(vars, 42), None, "{vars:?}");
        }
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let first = monotonic_usec().unwrap();
        let second = monotonic_usec().unwrap();
        assert!(first > 0 && second >= first);
    }
}
