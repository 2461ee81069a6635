//! The console's Events page: the last 1,000 warnings and errors the
//! daemon logged (cache failures, upload errors, refused logins, state
//! changes), kept in memory by a tracing layer beside the log output.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

pub const CAPACITY: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub unix: u64,
    pub level: String,
    pub target: String,
    pub message: String,
    /// The event's other fields, `key=value` separated by spaces.
    pub fields: String,
}

pub struct EventLog {
    ring: Mutex<VecDeque<LoggedEvent>>,
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog { ring: Mutex::new(VecDeque::with_capacity(CAPACITY)) }
    }

    /// The daemon's log, shared by the tracing layer and the console.
    pub fn global() -> &'static EventLog {
        static LOG: OnceLock<EventLog> = OnceLock::new();
        LOG.get_or_init(EventLog::new)
    }

    pub fn record(&self, e: LoggedEvent) {
        let mut ring = self.ring.lock();
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(e);
    }

    /// Newest first.
    pub fn latest(&self) -> Vec<LoggedEvent> {
        self.ring.lock().iter().rev().cloned().collect()
    }
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::new()
    }
}

/// Records WARN and ERROR events into [`EventLog::global`].
pub struct EventLayer;

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, "{}{}={:?}", if self.rest.is_empty() { "" } else { " " }, field.name(), value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, "{}{}={}", if self.rest.is_empty() { "" } else { " " }, field.name(), value);
        }
    }
}

impl<S: Subscriber> Layer<S> for EventLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        EventLog::global().record(LoggedEvent {
            unix: crate::admin::accounts::now_unix(),
            level: level.to_string(),
            target: event.metadata().target().to_string(),
            message: fields.message,
            fields: fields.rest,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_thousand_newest_first() {
        let log = EventLog::new();
        for i in 0..1005u64 {
            log.record(LoggedEvent {
                unix: i,
                level: "WARN".into(),
                target: "t".into(),
                message: format!("m{i}"),
                fields: String::new(),
            });
        }
        let l = log.latest();
        assert_eq!(l.len(), CAPACITY);
        assert_eq!(l[0].message, "m1004");
        assert_eq!(l[CAPACITY - 1].message, "m5");
    }

    #[test]
    fn layer_records_warnings_only() {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(EventLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not recorded");
            tracing::warn!(client = "192.0.2.9", "login refused in test");
        });
        let found = EventLog::global().latest().into_iter().find(|e| e.message == "login refused in test");
        let e = found.expect("recorded");
        assert_eq!(e.level, "WARN");
        assert!(e.fields.contains("client=192.0.2.9"), "{}", e.fields);
        assert!(!EventLog::global().latest().iter().any(|e| e.message == "not recorded"));
    }
}
