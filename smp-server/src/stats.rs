//! Server counters with the reference's names (`ServerStats`): kept in
//! memory, saved to `smp-server-stats.log` at shutdown and restored at start,
//! and served as Prometheus text (`simplex_smp_*`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($field:ident => $name:literal, $help:literal;)*) => {
        /// Aggregate counters; never per-client or per-queue data.
        #[derive(Debug, Default)]
        pub struct Stats {
            $(pub $field: AtomicU64,)*
        }

        impl Stats {
            /// `name=value` lines, the reference's stats-file layout.
            pub fn to_file_text(&self) -> String {
                let mut s = String::new();
                $(let _ = writeln!(s, "{}={}", $name, self.$field.load(Ordering::Relaxed));)*
                s
            }

            /// Restores counters saved by [`Stats::to_file_text`]; unknown
            /// or malformed lines are ignored.
            pub fn load_file_text(&self, text: &str) {
                for line in text.lines() {
                    let Some((k, v)) = line.split_once('=') else { continue };
                    let Ok(v) = v.trim().parse::<u64>() else { continue };
                    match k.trim() {
                        $($name => self.$field.store(v, Ordering::Relaxed),)*
                        _ => {}
                    }
                }
            }

            /// Prometheus text exposition.
            pub fn prometheus(&self) -> String {
                let mut s = String::new();
                $(
                    let _ = writeln!(s, "# HELP simplex_smp_{} {}", $name, $help);
                    let _ = writeln!(s, "# TYPE simplex_smp_{} counter", $name);
                    let _ = writeln!(s, "simplex_smp_{} {}", $name, self.$field.load(Ordering::Relaxed));
                )*
                s
            }
        }
    };
}

counters! {
    q_created => "qCreated", "Created queues";
    q_secured => "qSecured", "Secured queues";
    q_deleted => "qDeletedAll", "Deleted queues";
    msg_sent => "msgSent", "Messages sent";
    msg_recv => "msgRecv", "Messages received (acknowledged)";
    msg_expired => "msgExpired", "Expired messages";
    p_relays => "pRelaysRequests", "Proxy sessions requested (PRXY)";
    p_msgs => "pMsgFwds", "Messages forwarded by the proxy (PFWD)";
    p_msgs_recv => "pMsgFwdsRecv", "Forwarded commands received as relay (RFWD)";
}

impl Stats {
    pub fn queue_created(&self) {
        self.q_created.fetch_add(1, Ordering::Relaxed);
    }
    pub fn queue_secured(&self) {
        self.q_secured.fetch_add(1, Ordering::Relaxed);
    }
    pub fn queue_deleted(&self) {
        self.q_deleted.fetch_add(1, Ordering::Relaxed);
    }
    pub fn msg_sent(&self) {
        self.msg_sent.fetch_add(1, Ordering::Relaxed);
    }
    pub fn msg_received(&self) {
        self.msg_recv.fetch_add(1, Ordering::Relaxed);
    }
    pub fn msgs_expired(&self, n: u64) {
        self.msg_expired.fetch_add(n, Ordering::Relaxed);
    }
    pub fn proxy_session(&self) {
        self.p_relays.fetch_add(1, Ordering::Relaxed);
    }
    pub fn proxied_sent(&self) {
        self.p_msgs.fetch_add(1, Ordering::Relaxed);
    }
    pub fn proxied_received(&self) {
        self.p_msgs_recv.fetch_add(1, Ordering::Relaxed);
    }
}
