//! `[LIMITS]` in `smp-server.ini`: our section (the reference ignores it).

use smp_server::config::{ConfigError, DEFAULT_MAX_CONNECTIONS, ServerConfig};

const BASE: &str = "[TRANSPORT]\nport = 5223\n";

fn with_limit(value: &str) -> Result<ServerConfig, ConfigError> {
    ServerConfig::parse(&format!("{BASE}\n[LIMITS]\nmax_connections = {value}\n"))
}

#[test]
fn max_connections_has_a_default_and_takes_a_positive_count() {
    assert_eq!(DEFAULT_MAX_CONNECTIONS, 8192);
    assert_eq!(
        ServerConfig::parse(BASE).unwrap().max_connections,
        DEFAULT_MAX_CONNECTIONS
    );
    assert_eq!(with_limit("100").unwrap().max_connections, 100);
    assert_eq!(
        with_limit("4294967295").unwrap().max_connections,
        4294967295
    );
    for bad in ["0", "-5", "many", "4294967296", "1.5"] {
        assert_eq!(
            with_limit(bad).err(),
            Some(ConfigError::Invalid {
                key: "max_connections",
                value: bad.into()
            }),
            "{bad:?} is refused"
        );
    }
}
