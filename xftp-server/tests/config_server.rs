//! Typed `file-server.ini`: every key's default and error, and the INI that
//! `init` writes.

use std::path::PathBuf;

use smp_core::file::description::FileSize;
use smp_core::xftp::command::BasicAuth;
use xftp_server::config::{
    ConfigError, InactiveClients, InitValues, LimitsConfig, ServerConfig, StoreFiles,
    init_ini_text, read_hs_int, show_ttl,
};

/// The smallest file the reference accepts: the two required keys.
const MINIMAL: &str = "[TRANSPORT]\nport = 443\n[FILES]\npath = /srv/xftp\n";

fn with(extra_sections: &str) -> String {
    // Later sections replace earlier ones of the same name, so extra
    // sections are put first and the required ones are merged by hand.
    format!("{extra_sections}\n{MINIMAL}")
}

fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
    ServerConfig::parse(text)
}

fn invalid(key: &str, value: &str) -> ConfigError {
    let key: &'static str = Box::leak(key.to_string().into_boxed_str());
    ConfigError::InvalidSetting {
        key,
        value: value.into(),
    }
}

#[test]
fn defaults_of_a_minimal_file() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.port, 443);
    assert_eq!(c.files_path, PathBuf::from("/srv/xftp"));
    assert!(!c.store_log, "absent enable means off");
    assert_eq!(c.store_files, StoreFiles::Memory);
    assert_eq!(c.expire_files_hours, 48);
    assert_eq!(c.file_ttl_secs(), 48 * 3600);
    assert!(!c.log_stats);
    assert_eq!(c.prometheus_interval, None);
    assert!(c.allow_new_files, "absent new_files means on");
    assert_eq!(c.create_password, None);
    assert_eq!(c.control_port_admin_password, None);
    assert_eq!(c.control_port_user_password, None);
    assert_eq!(c.host, None);
    assert_eq!(c.address_host(), "<hostnames>");
    assert!(!c.log_tls_errors);
    assert_eq!(c.control_port, None);
    assert_eq!(c.storage_quota, None);
    assert_eq!(c.inactive_clients, None);
    assert_eq!(c.web, Default::default());
    assert_eq!(c.information, Default::default());
}

#[test]
fn required_keys() {
    assert_eq!(
        parse("[FILES]\npath = /x\n"),
        Err(ConfigError::MissingKey {
            section: "TRANSPORT",
            key: "port"
        })
    );
    assert_eq!(
        parse("[TRANSPORT]\nport = 443\n"),
        Err(ConfigError::MissingKey {
            section: "FILES",
            key: "path"
        })
    );
    assert_eq!(
        ConfigError::MissingKey {
            section: "TRANSPORT",
            key: "port"
        }
        .to_string(),
        "no key port in section TRANSPORT"
    );
}

#[test]
fn port_is_a_single_decimal_port() {
    let p = |v: &str| parse(&format!("[TRANSPORT]\nport = {v}\n[FILES]\npath = /x\n"));
    assert_eq!(p("8000").unwrap().port, 8000);
    for bad in ["5223,443", "+443", "65536", "https", ""] {
        assert_eq!(p(bad), Err(invalid("port", bad)), "{bad:?}");
    }
}

#[test]
fn host() {
    let c =
        parse("[TRANSPORT]\nhost = xftp.example.com\nport = 5443\n[FILES]\npath = /x\n").unwrap();
    assert_eq!(c.host.as_deref(), Some("xftp.example.com"));
    assert_eq!(c.address_host(), "xftp.example.com");
}

#[test]
fn on_off_keys_accept_exactly_on_and_off() {
    type Reader = fn(&ServerConfig) -> bool;
    let cases: [(&str, &str, Reader); 5] = [
        ("STORE_LOG", "enable", |c| c.store_log),
        ("STORE_LOG", "log_stats", |c| c.log_stats),
        ("AUTH", "new_files", |c| c.allow_new_files),
        ("TRANSPORT", "log_tls_errors", |c| c.log_tls_errors),
        ("INACTIVE_CLIENTS", "disconnect", |c| {
            c.inactive_clients.is_some()
        }),
    ];
    for (section, key, read) in &cases {
        let text = |v: &str| {
            let extra = if *section == "INACTIVE_CLIENTS" {
                "ttl = 60\ncheck_interval = 10\n"
            } else {
                ""
            };
            if *section == "TRANSPORT" {
                format!("[TRANSPORT]\nport = 443\n{key} = {v}\n[FILES]\npath = /x\n")
            } else {
                with(&format!("[{section}]\n{key} = {v}\n{extra}"))
            }
        };
        assert!(read(&parse(&text("on")).unwrap()), "{key} on");
        assert!(!read(&parse(&text("off")).unwrap()), "{key} off");
        for bad in ["On", "yes", "true", "1", "", "on # comment"] {
            assert_eq!(parse(&text(bad)), Err(invalid(key, bad)), "{key} = {bad:?}");
        }
    }
    assert_eq!(
        invalid("enable", "yes").to_string(),
        "invalid INI setting enable: yes"
    );
}

#[test]
fn store_files() {
    let p = |v: &str| parse(&with(&format!("[STORE_LOG]\nstore_files = {v}\n")));
    assert_eq!(p("memory").unwrap().store_files, StoreFiles::Memory);
    assert_eq!(p("database").unwrap().store_files, StoreFiles::Database);
    assert_eq!(
        p("disk"),
        Err(ConfigError::InvalidStoreFiles("disk".into()))
    );
    assert_eq!(
        ConfigError::InvalidStoreFiles("disk".into()).to_string(),
        "Invalid store_files value: disk"
    );
}

#[test]
fn expire_files_hours() {
    let p = |v: &str| parse(&with(&format!("[STORE_LOG]\nexpire_files_hours = {v}\n")));
    assert_eq!(p("36").unwrap().file_ttl_secs(), 36 * 3600);
    assert_eq!(p("0x10").unwrap().expire_files_hours, 16);
    assert_eq!(p("-1").unwrap().expire_files_hours, -1);
    for bad in ["", "2d", "1.5", "forever", "9223372036854775807"] {
        assert_eq!(p(bad), Err(invalid("expire_files_hours", bad)), "{bad:?}");
    }
}

#[test]
fn haskell_read_of_integers() {
    assert_eq!(read_hs_int("48"), Some(48));
    assert_eq!(read_hs_int("-48"), Some(-48));
    assert_eq!(read_hs_int("0o17"), Some(15));
    assert_eq!(read_hs_int("0XfF"), Some(255));
    assert_eq!(read_hs_int("9223372036854775807"), Some(i64::MAX));
    assert_eq!(read_hs_int("-9223372036854775808"), Some(i64::MIN));
    for bad in ["", "-", "+1", "0x", "1 2", "١٢", "9223372036854775808"] {
        assert_eq!(read_hs_int(bad), None, "{bad:?}");
    }
}

#[test]
fn prometheus_port_is_ours_and_checked() {
    let p = |v: &str| parse(&with(&format!("[STORE_LOG]\nprometheus_port = {v}\n")));
    assert_eq!(p("9100").unwrap().prometheus_port, Some(9100));
    assert!(p("0").is_err());
    assert!(p("nine").is_err());
    assert!(p("70000").is_err());
    assert_eq!(parse(&with("")).unwrap().prometheus_port, None);
}

#[test]
fn prometheus_interval_is_silently_absent_when_unreadable() {
    let p = |v: &str| parse(&with(&format!("[STORE_LOG]\nprometheus_interval = {v}\n")));
    assert_eq!(p("60").unwrap().prometheus_interval, Some(60));
    assert_eq!(p("sixty").unwrap().prometheus_interval, None);
    assert_eq!(p("+60").unwrap().prometheus_interval, None);
}

#[test]
fn passwords() {
    for key in [
        "create_password",
        "control_port_admin_password",
        "control_port_user_password",
    ] {
        let p = |v: &str| parse(&with(&format!("[AUTH]\n{key} = {v}\n")));
        let get = |c: ServerConfig| match key {
            "create_password" => c.create_password,
            "control_port_admin_password" => c.control_port_admin_password,
            _ => c.control_port_user_password,
        };
        assert_eq!(get(p("s3cr3t!").unwrap()), BasicAuth::new(b"s3cr3t!"));
        for bad in ["", "a@b", "a:b", "a/b", "a b"] {
            let key: &'static str = Box::leak(key.to_string().into_boxed_str());
            assert_eq!(p(bad), Err(ConfigError::InvalidPassword { key }), "{bad:?}");
        }
    }
    // The message must not echo the password.
    let msg = ConfigError::InvalidPassword {
        key: "create_password",
    }
    .to_string();
    assert!(
        msg.starts_with("invalid INI setting create_password:"),
        "{msg}"
    );
}

#[test]
fn control_port() {
    let p = |v: &str| {
        parse(&format!(
            "[TRANSPORT]\nport = 443\ncontrol_port = {v}\n[FILES]\npath = /x\n"
        ))
    };
    assert_eq!(p("5226").unwrap().control_port, Some(5226));
    assert_eq!(p("none"), Err(invalid("control_port", "none")));
}

#[test]
fn storage_quota() {
    let p = |v: &str| {
        parse(&format!(
            "[TRANSPORT]\nport = 443\n[FILES]\npath = /x\nstorage_quota = {v}\n"
        ))
    };
    assert_eq!(p("100gb").unwrap().storage_quota, Some(FileSize(100 << 30)));
    assert_eq!(p("64kb").unwrap().storage_quota, Some(FileSize(64 << 10)));
    assert_eq!(p("12345").unwrap().storage_quota, Some(FileSize(12345)));
    for bad in ["100GB", "1tb", "", "lots"] {
        assert_eq!(p(bad), Err(invalid("storage_quota", bad)), "{bad:?}");
    }
}

#[test]
fn inactive_clients() {
    let p = |body: &str| parse(&with(&format!("[INACTIVE_CLIENTS]\n{body}")));
    assert_eq!(
        p("disconnect = off\nttl = x\n").unwrap().inactive_clients,
        None
    );
    assert_eq!(
        p("disconnect = on\nttl = 21600\ncheck_interval = 3600\n")
            .unwrap()
            .inactive_clients,
        Some(InactiveClients {
            ttl: 21600,
            check_interval: 3600
        })
    );
    assert_eq!(
        p("disconnect = on\ncheck_interval = 3600\n"),
        Err(ConfigError::MissingKey {
            section: "INACTIVE_CLIENTS",
            key: "ttl"
        })
    );
    assert_eq!(
        p("disconnect = on\nttl = 1\n"),
        Err(ConfigError::MissingKey {
            section: "INACTIVE_CLIENTS",
            key: "check_interval"
        })
    );
    assert_eq!(
        p("disconnect = on\nttl = 6h\ncheck_interval = 1\n"),
        Err(invalid("ttl", "6h"))
    );
}

#[test]
fn limits_have_defaults_and_take_positive_numbers() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.limits,
        LimitsConfig {
            streams_per_connection: 64,
            concurrent_uploads: 256,
            upload_stall_secs: 60,
            max_connections: 1024,
        }
    );
    let c = parse(&with(
        "[LIMITS]\nstreams_per_connection = 8\nconcurrent_uploads = 32\nupload_stall_timeout = 15\nmax_connections = 100",
    ))
    .unwrap();
    assert_eq!(
        c.limits,
        LimitsConfig {
            streams_per_connection: 8,
            concurrent_uploads: 32,
            upload_stall_secs: 15,
            max_connections: 100,
        }
    );
    for (key, v) in [
        ("streams_per_connection", "0"),
        ("concurrent_uploads", "-1"),
        ("upload_stall_timeout", "1m"),
        ("streams_per_connection", "4294967296"),
        ("max_connections", "0"),
    ] {
        assert_eq!(
            parse(&with(&format!("[LIMITS]\n{key} = {v}"))).unwrap_err(),
            invalid(key, v),
            "{key} = {v}"
        );
    }
}

#[test]
fn web_keys() {
    let c = parse(&with(
        "[WEB]\nstatic_path = /var/www\nhttp = 8000\nhttps = 8443\ncert = /c.crt\nkey = /c.key\n",
    ))
    .unwrap();
    assert_eq!(c.web.static_path, Some(PathBuf::from("/var/www")));
    assert_eq!(c.web.http, Some(8000));
    assert_eq!(c.web.https, Some(8443));
    assert_eq!(
        c.web.credentials(),
        Some((
            PathBuf::from("/c.crt").as_path(),
            PathBuf::from("/c.key").as_path()
        ))
    );
    // Unreadable ports are absent (readMaybe); cert without key is no credential.
    let c = parse(&with("[WEB]\nhttp = web\ncert = /c.crt\n")).unwrap();
    assert_eq!(c.web.http, None);
    assert_eq!(c.web.credentials(), None);
}

#[test]
fn information_is_validated_only_with_source_code() {
    let bad = "[INFORMATION]\nserver_country = Germany\nhosting_type = cloud\n";
    let c = parse(&with(bad)).unwrap();
    assert_eq!(c.information.get("server_country"), Some("Germany"));
    let with_source = format!(
        "[INFORMATION]\nsource_code = https://example.com/src\n{}",
        &bad[14..]
    );
    assert_eq!(
        parse(&with(&with_source)),
        Err(ConfigError::InvalidCountry("server_country"))
    );
    let ok = "[INFORMATION]\nsource_code = https://example.com/src\nserver_country = de\nhosting_type = owned\n";
    let c = parse(&with(ok)).unwrap();
    assert_eq!(
        c.information.source_code.as_deref(),
        Some("https://example.com/src")
    );
    assert_eq!(c.information.get("hosting_type"), Some("owned"));
    let bad_type = "[INFORMATION]\nsource_code = s\nhosting_type = cloud\n";
    assert_eq!(
        parse(&with(bad_type)),
        Err(invalid("hosting_type", "cloud"))
    );
    assert_eq!(
        ConfigError::InvalidCountry("server_country").to_string(),
        "Use ISO3166 2-letter code for server_country"
    );
}

#[test]
fn a_stray_line_hides_the_required_sections() {
    // ini 0.4.1 stops at the stray line; the reference then reports the port.
    let text = "[STORE_LOG]\nenable = on\noops\n[TRANSPORT]\nport = 443\n[FILES]\npath = /x\n";
    assert_eq!(
        parse(text),
        Err(ConfigError::MissingKey {
            section: "TRANSPORT",
            key: "port"
        })
    );
}

#[test]
fn show_ttl_uses_the_largest_exact_unit() {
    assert_eq!(show_ttl(48 * 3600), "2 days");
    assert_eq!(show_ttl(36 * 3600), "36 hours");
    assert_eq!(show_ttl(90 * 60), "90 minutes");
    assert_eq!(show_ttl(61), "61 seconds");
    assert_eq!(show_ttl(86400), "1 days");
    assert_eq!(show_ttl(0), "0 days");
    assert_eq!(show_ttl(-3600), "-1 hours");
}

fn init_values() -> InitValues {
    InitValues {
        enable_store_log: true,
        host: "xftp.example.com".into(),
        files_path: "/srv/xftp files".into(),
        quota: FileSize(100 << 30),
        web_static_path: "/var/opt/simplex-xftp/www".into(),
        cfg_dir: "/etc/opt/simplex-xftp".into(),
    }
}

#[test]
fn init_ini_parses_back_to_the_init_values() {
    let c = parse(&init_ini_text(&init_values())).unwrap();
    let expected = ServerConfig {
        information: Default::default(),
        store_log: true,
        store_files: StoreFiles::Memory,
        expire_files_hours: 48,
        log_stats: false,
        prometheus_interval: None,
        prometheus_port: None,
        allow_new_files: true,
        create_password: None,
        control_port_admin_password: None,
        control_port_user_password: None,
        host: Some("xftp.example.com".into()),
        port: 443,
        log_tls_errors: false,
        control_port: None,
        files_path: "/srv/xftp files".into(),
        storage_quota: Some(FileSize(100 << 30)),
        inactive_clients: None,
        web: xftp_server::config::WebConfig {
            static_path: Some("/var/opt/simplex-xftp/www".into()),
            ..Default::default()
        },
        limits: LimitsConfig::default(),
    };
    assert_eq!(c, expected);

    let mut v = init_values();
    v.enable_store_log = false;
    v.quota = FileSize(64 << 10);
    let c = parse(&init_ini_text(&v)).unwrap();
    assert!(!c.store_log);
    assert_eq!(c.storage_quota, Some(FileSize(64 << 10)));
}

#[test]
fn init_ini_has_the_reference_keys() {
    let text = init_ini_text(&init_values());
    for line in [
        "[INFORMATION]",
        "# source_code = https://github.com/simplex-chat/simplexmq",
        "[STORE_LOG]",
        "enable = on",
        "store_files = memory",
        "# db_connection = postgresql://xftp@/xftp_server_store",
        "# db_schema = xftp_server",
        "# db_pool_size = 10",
        "# db_store_log = off",
        "expire_files_hours = 48",
        "log_stats = off",
        "# prometheus_interval = 60",
        "[AUTH]",
        "new_files = on",
        "# control_port_admin_password =",
        "# control_port_user_password =",
        "[TRANSPORT]",
        "host = xftp.example.com",
        "port = 443",
        "log_tls_errors = off",
        "# control_port = 5226",
        "[FILES]",
        "path = /srv/xftp files",
        "storage_quota = 100gb",
        "[INACTIVE_CLIENTS]",
        "disconnect = off",
        "# ttl = 21600",
        "# check_interval = 3600",
        "[WEB]",
        "static_path = /var/opt/simplex-xftp/www",
        "# http = 8000",
        "# cert = /etc/opt/simplex-xftp/web.crt",
        "# key = /etc/opt/simplex-xftp/web.key",
    ] {
        assert!(text.lines().any(|l| l == line), "missing line {line:?}");
    }
    // Every non-comment line must be a section or `key = value`, so that the
    // reference's parser (which stops at anything else) reads all of it.
    for l in text.lines() {
        let l = l.trim();
        assert!(
            l.is_empty() || l.starts_with('#') || l.starts_with('[') || l.contains(" = "),
            "{l:?}"
        );
    }
    assert!(text.contains("# create_password ="));
}
