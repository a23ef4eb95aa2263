//! Log output: `tracing-subscriber`'s text format, or one JSON object per
//! line ([`JsonFormat`]) for log collectors, filtered by `RUST_LOG`
//! (default `info`), with rustls's own warnings off unless asked for
//! ([`filter_directives`]).

use serde_json::{Map, Value};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The filter for `RUST_LOG` (`None` when unset): `info` by default, and
/// `rustls=error` added unless the variable names rustls itself.
///
/// rustls warns about what peers send (an IP address as SNI, warning
/// alerts, an unexpected message), once per handshake, so any client could
/// write a line per connection; wrk's IP-address SNI cost 2% of a full
/// handshake's CPU in log formatting and writes. portcullis logs failed
/// handshakes itself, per connection, at debug level.
pub fn filter_directives(rust_log: Option<&str>) -> String {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => "info,rustls=error".to_string(),
        Some(v) if v.contains("rustls") => v.to_string(),
        Some(v) => format!("{v},rustls=error"),
    }
}

/// Installs the global subscriber writing to standard error.
pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = EnvFilter::try_new(filter_directives(rust_log.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new(filter_directives(None)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.event_format(JsonFormat).try_init(),
    };
}

/// Formats each event as a JSON object: `timestamp` (Unix seconds), `level`,
/// `target`, `message`, the event's other fields, and `spans` (name and
/// formatted fields of each enclosing span, outermost first).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut object = Map::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        object.insert("timestamp".into(), now.into());
        object.insert("level".into(), meta.level().as_str().into());
        object.insert("target".into(), meta.target().into());
        event.record(&mut JsonVisitor(&mut object));
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let ext = span.extensions();
                    let fields = ext
                        .get::<FormattedFields<N>>()
                        .map(|f| f.fields.clone())
                        .unwrap_or_default();
                    serde_json::json!({ "name": span.name(), "fields": fields })
                })
                .collect();
            if !spans.is_empty() {
                object.insert("spans".into(), spans.into());
            }
        }
        let line = serde_json::to_string(&Value::Object(object)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Collects an event's fields into a JSON map.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rustls_warnings_are_off_unless_rust_log_names_rustls() {
        assert_eq!(filter_directives(None), "info,rustls=error");
        assert_eq!(filter_directives(Some(" ")), "info,rustls=error");
        assert_eq!(
            filter_directives(Some("portcullis=debug,info")),
            "portcullis=debug,info,rustls=error"
        );
        assert_eq!(
            filter_directives(Some("debug,rustls=warn")),
            "debug,rustls=warn"
        );
        assert!(EnvFilter::try_new(filter_directives(Some("warn"))).is_ok());
    }

    #[test]
    fn json_lines_carry_level_message_fields_and_spans() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonFormat)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("conn", remote = "1.2.3.4:5");
            let _entered = span.enter();
            tracing::warn!(binds = 2u64, file = "a.yaml", "reloaded");
        });
        let bytes = buffer.0.lock().expect("not poisoned").clone();
        let line = String::from_utf8(bytes).expect("utf-8");
        let v: Value = serde_json::from_str(line.trim()).expect("one JSON object");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "reloaded");
        assert_eq!(v["binds"], 2);
        assert_eq!(v["file"], "a.yaml");
        assert_eq!(v["spans"][0]["name"], "conn");
    }
}
