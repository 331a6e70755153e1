#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::address::{ServerAddress, TransportHost};
use smp_core::agent::link::ConnectionRequest;
use smp_core::smp::queue_uri::{QueueUri, SRV_HOSTNAMES_CLIENT_VERSION};

/// Whether a host list prints in a form that does not read back: the
/// reference shows IPv4-compatible and IPv4-mapped IPv6 hosts with a dotted
/// tail (`::0.1.0.0`, `::ffff:1.2.3.4`, iproute's form) but reads an
/// unbracketed IPv6 host as hex digits and colons only, so the dot ends it
/// early (found by this target after 3·10⁶ executions).
fn dotted_ipv6(hosts: &[TransportHost]) -> bool {
    hosts
        .iter()
        .any(|h| matches!(h, TransportHost::Ipv6(_)) && h.to_string().contains('.'))
}

/// A queue URI whose server the encoding cannot say: a dotted IPv6 host,
/// or (the reference writes IPv6 hosts without brackets) an IPv6 host
/// printed last in the authority before `:port`, which reads back as
/// another address (both found by this target). For clients older than
/// `srv=` hosts the authority holds the first host alone, so that one is
/// last there (found by this target too).
///
/// Queue URIs also move hosts between the authority and `srv=`, so a domain
/// the grammar takes but no name has (brackets, `%`, control characters)
/// can read back as something else; the property holds for host names.
fn unsayable(q: &QueueUri) -> bool {
    let hosts = q.server.hosts();
    let odd_name = |h: &TransportHost| {
        matches!(h, TransportHost::Domain(d)
            if !d.bytes().all(|c| c.is_ascii_alphanumeric() || b".-_".contains(&c)))
    };
    let last_in_authority = if q.client_versions.min() < SRV_HOSTNAMES_CLIENT_VERSION {
        hosts.first()
    } else {
        hosts.last()
    };
    dotted_ipv6(hosts)
        || hosts.iter().any(odd_name)
        || (q.server.port().is_some() && matches!(last_in_authority, Some(TransportHost::Ipv6(_))))
}

// Server addresses, queue URIs and connection links: parse → print →
// parse gives the same value.
fuzz_target!(|data: &[u8]| {
    let Ok(s) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = s.parse::<ServerAddress>()
        && !dotted_ipv6(a.hosts())
    {
        assert_eq!(a.to_string().parse::<ServerAddress>().ok(), Some(a));
    }
    if let Ok(q) = QueueUri::parse(s)
        && !unsayable(&q)
    {
        assert_eq!(QueueUri::parse(&q.to_uri_string()).ok(), Some(q));
    }
    if let Ok(c) = ConnectionRequest::parse(s)
        && !c.data().queues.iter().any(unsayable)
        && let Ok(link) = c.to_link_string()
    {
        assert_eq!(ConnectionRequest::parse(&link).ok(), Some(c));
    }
});
