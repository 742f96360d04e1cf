//! The commit log on the tenant's log stream: fenced appends, bounds and
//! reads.
//!
//! An append says which position it follows with
//! `Nats-Expected-Last-Sequence`: the log stream has one subject, so this
//! is the subject's last sequence as well, and unlike
//! `Nats-Expected-Last-Subject-Sequence` it stays right once the stream's
//! `max_age` has dropped every record (the stream keeps its last sequence;
//! the subject would look empty, and the active would be refused).
//!
//! Every append also carries `Nats-Msg-Id` = `<node>-<position>-<digest of
//! the record>`: an append retried after a timeout (the record may have
//! landed) is answered with the first one's position instead of being
//! fenced, and only the same record from the same node at the same place
//! can be taken for it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use tokio::sync::{Mutex, mpsc};

use super::error::{ClusterError, bounded};
use super::names::Names;
use crate::cluster::{CommitLog, LogError, Position};

/// How much longer than the request timeout a blocking append waits for
/// the connection's task to answer.
const BRIDGE_GRACE: Duration = Duration::from_secs(1);

/// After the first record of a read, how long to wait for each next one
/// before answering with what came: records already on their way arrive
/// within it.
const LINGER: Duration = Duration::from_millis(5);

/// The commit log on JetStream. Cheap to clone; implements the blocking
/// [`CommitLog`] for the store.
#[derive(Clone)]
pub struct JetStreamLog {
    core: Arc<LogCore>,
    /// To the task that owns the appends of blocking callers.
    bridge: mpsc::UnboundedSender<Job>,
}

struct LogCore {
    js: jetstream::Context,
    names: Names,
    node_id: String,
    timeout: Duration,
    /// The ordered consumer of the last `read`, kept while reads go on
    /// from where it stands.
    cursor: Mutex<Option<Cursor>>,
}

struct Cursor {
    next: Position,
    messages: pull::Ordered,
}

struct Job {
    record: Vec<u8>,
    expected: Position,
    reply: std::sync::mpsc::SyncSender<Result<Position, LogError>>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("stream", &self.core.names.log_stream())
            .finish()
    }
}

impl JetStreamLog {
    /// The log, and the task blocking appends go through. Called within
    /// the runtime the connection lives on.
    pub(crate) fn start(
        js: jetstream::Context,
        names: Names,
        node_id: String,
        timeout: Duration,
    ) -> JetStreamLog {
        let core = Arc::new(LogCore {
            js,
            names,
            node_id,
            timeout,
            cursor: Mutex::new(None),
        });
        let (bridge, jobs) = mpsc::unbounded_channel();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(serve_blocking_appends(core.clone(), jobs));
        }
        // Without a runtime the receiver is dropped here, and blocking
        // appends answer Unavailable.
        JetStreamLog { core, bridge }
    }

    /// Appends `record` if the log's last position is `expected_last` (0:
    /// empty), and returns its position once JetStream has it (its publish
    /// ack, after the replicas' quorum). `Fenced` when the log has moved
    /// on (JetStream's "wrong last sequence", error 10071); `Unavailable`
    /// when NATS did not answer within the request timeout or refused for
    /// another reason: the record may or may not be in the log, and the
    /// same call again is safe (answered with the first one's position if
    /// it landed, within JetStream's duplicate window of 2 minutes).
    pub async fn append_async(
        &self,
        record: Vec<u8>,
        expected_last: Position,
    ) -> Result<Position, LogError> {
        self.core.append(record, expected_last).await
    }

    /// The log's first and last positions; `(0, 0)` when nothing was ever
    /// appended. When every record has aged out, `first` is `last + 1`.
    pub async fn bounds(&self) -> Result<(Position, Position), ClusterError> {
        let core = &self.core;
        let what = format!(
            "reading the state of the stream {}",
            core.names.log_stream()
        );
        let mut stream = bounded(
            &what,
            core.timeout,
            core.js.get_stream(core.names.log_stream()),
        )
        .await?;
        let info = bounded(&what, core.timeout, stream.info()).await?;
        let state = &info.state;
        if state.last_sequence == 0 {
            return Ok((0, 0));
        }
        Ok((state.first_sequence, state.last_sequence))
    }

    /// Up to `max` records from position `from` on (0 is taken as 1), in
    /// order, waiting up to `wait` for the first one (an empty answer when
    /// none came), then taking what follows while it comes within 5 ms. When `from` is older than the stream's history the
    /// answer starts at the first record kept: the caller sees the gap as
    /// a first position greater than `from` (and then needs a snapshot).
    ///
    /// Reads that go on from where the last one ended reuse its consumer
    /// (an ordered consumer, which JetStream recreates itself across a
    /// failover); a read from elsewhere starts a new one.
    pub async fn read(
        &self,
        from: Position,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Position, Vec<u8>)>, ClusterError> {
        let core = &self.core;
        let from = from.max(1);
        let mut records = Vec::new();
        if max == 0 {
            return Ok(records);
        }
        let mut guard = core.cursor.lock().await;
        let reuse = guard.as_ref().is_some_and(|c| c.next == from);
        if !reuse {
            *guard = None;
            *guard = Some(Cursor {
                next: from,
                messages: core.consumer(from).await?,
            });
        }
        let Some(cursor) = guard.as_mut() else {
            return Ok(records);
        };
        let first = match tokio::time::timeout(wait, cursor.messages.next()).await {
            Err(_) => return Ok(records),
            Ok(item) => item,
        };
        let mut item = first;
        loop {
            match item {
                None => {
                    *guard = None;
                    break;
                }
                Some(Err(error)) => {
                    *guard = None;
                    if records.is_empty() {
                        return Err(ClusterError::request(
                            format!("reading the stream {}", core.names.log_stream()),
                            error,
                        ));
                    }
                    break;
                }
                Some(Ok(message)) => {
                    let position = match message.info() {
                        Ok(info) => info.stream_sequence,
                        Err(error) => {
                            *guard = None;
                            return Err(ClusterError::decode(
                                format!("a record of the stream {}", core.names.log_stream()),
                                error,
                            ));
                        }
                    };
                    cursor.next = position.saturating_add(1);
                    records.push((position, message.payload.to_vec()));
                }
            }
            if records.len() >= max {
                break;
            }
            match tokio::time::timeout(LINGER, cursor.messages.next()).await {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        Ok(records)
    }
}

impl LogCore {
    async fn append(&self, record: Vec<u8>, expected: Position) -> Result<Position, LogError> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_EXPECTED_LAST_SEQUENCE, expected.to_string().as_str());
        headers.insert(
            NATS_MESSAGE_ID,
            append_id(&self.node_id, expected, &record).as_str(),
        );
        let publish = async {
            self.js
                .publish_with_headers(self.names.log_subject(), headers, record.into())
                .await?
                .await
        };
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(ack)) if ack.stream == self.names.log_stream() => Ok(ack.sequence),
            Ok(Ok(ack)) => Err(LogError::Unavailable(format!(
                "the log's subject {} is taken by the stream {}, not {}",
                self.names.log_subject(),
                ack.stream,
                self.names.log_stream()
            ))),
            Ok(Err(error)) if error.kind() == PublishErrorKind::WrongLastSequence => {
                Err(LogError::Fenced {
                    expected,
                    found: found_position(&error.to_string()),
                })
            }
            Ok(Err(error)) => Err(LogError::Unavailable(format!(
                "appending to the stream {}: {error}",
                self.names.log_stream()
            ))),
            Err(_) => Err(LogError::Unavailable(format!(
                "appending to the stream {}: no acknowledgement within {}ms",
                self.names.log_stream(),
                self.timeout.as_millis()
            ))),
        }
    }

    async fn consumer(&self, from: Position) -> Result<pull::Ordered, ClusterError> {
        let what = format!("starting to read the stream {}", self.names.log_stream());
        let config = pull::OrderedConfig {
            filter_subject: self.names.log_subject(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        };
        let stream: stream::Stream<stream::Info> = bounded(
            &what,
            self.timeout,
            self.js.get_stream(self.names.log_stream()),
        )
        .await?;
        let consumer = bounded(&what, self.timeout, stream.create_consumer(config)).await?;
        bounded(&what, self.timeout, consumer.messages()).await
    }
}

/// The task that runs the appends of blocking callers on the connection's
/// runtime, each on its own task so that a slow one does not hold others.
async fn serve_blocking_appends(core: Arc<LogCore>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let core = core.clone();
        tokio::spawn(async move {
            let result = core.append(job.record, job.expected).await;
            // The caller may have given up waiting: nothing to tell then.
            let _ = job.reply.try_send(result);
        });
    }
}

impl CommitLog for JetStreamLog {
    /// Blocking: hands the append to the connection's task and waits for
    /// its answer, at most the request timeout and a second. Works from any
    /// thread (a `spawn_blocking` thread, a plain one); called on an async
    /// worker thread it blocks that thread, so callers there should use
    /// [`JetStreamLog::append_async`].
    fn append(&self, record: &[u8], expected_last: Position) -> Result<Position, LogError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let job = Job {
            record: record.to_vec(),
            expected: expected_last,
            reply,
        };
        if self.bridge.send(job).is_err() {
            return Err(LogError::Unavailable(
                "the NATS connection's runtime has stopped".into(),
            ));
        }
        let wait = self.core.timeout.saturating_add(BRIDGE_GRACE);
        match answer.recv_timeout(wait) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(LogError::Unavailable(format!(
                "appending to the stream {}: no answer within {}ms",
                self.core.names.log_stream(),
                wait.as_millis()
            ))),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(LogError::Unavailable(
                "the NATS connection's runtime has stopped".into(),
            )),
        }
    }
}

/// The id that makes a retried append a duplicate of the first: this
/// node, the position the record would take, and a digest of the record.
fn append_id(node_id: &str, expected: Position, record: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, record);
    let hex: String = digest
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{node_id}-{}-{hex}", expected.saturating_add(1))
}

/// The log's last position as JetStream's refusal says it: "wrong last
/// sequence: 42 (code 400, error code 10071)".
fn found_position(text: &str) -> Option<u64> {
    const SAID: &str = "wrong last sequence: ";
    let at = text.rfind(SAID)? + SAID.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_ids_differ_by_node_position_and_record() {
        let a = append_id("n1", 4, b"record");
        assert!(a.starts_with("n1-5-"));
        assert_eq!(a, append_id("n1", 4, b"record"));
        assert_ne!(a, append_id("n2", 4, b"record"));
        assert_ne!(a, append_id("n1", 5, b"record"));
        assert_ne!(a, append_id("n1", 4, b"other"));
    }

    #[test]
    fn the_found_position_is_read_from_the_error() {
        assert_eq!(
            found_position(
                "wrong last sequence: wrong last sequence: 42 (code 400, error code 10071)"
            ),
            Some(42)
        );
        assert_eq!(found_position("wrong last sequence"), None);
        assert_eq!(found_position("timed out (code 10071)"), None);
    }
}
