use super::*;

fn parse(text: &str) -> Result<Config> {
    Config::from_toml(text, Path::new("/srv/site"), Vec::new())
}

#[test]
fn relative_paths_resolve_against_config_dir() {
    let c =
        parse("[dump]\npath = \"dumps\"\n[storages]\nbasepath = \"/abs\"\npaths = [\"media\"]\n")
            .unwrap();
    assert_eq!(c.dump.path, Path::new("/srv/site/dumps"));
    assert_eq!(c.storages.basepath, Path::new("/abs"));
    assert_eq!(c.storages.paths, vec![PathBuf::from("/srv/site/media")]);
}

#[test]
fn zero_durations_and_counts_are_refused_by_name() {
    for (text, key) in [
        ("[server]\nsession_minutes = 0\n", "server.session_minutes"),
        ("[load]\ntimeout = 0\n", "load.timeout"),
        (
            "[load]\nmax_download_bytes = 0\n",
            "load.max_download_bytes",
        ),
        ("[dump]\nconcurrency = 0\n", "dump.concurrency"),
        ("[notify]\ntimeout = 0\n", "notify.timeout"),
        ("[notify]\nattempts = 0\n", "notify.attempts"),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("at least 1"), "{e}");
    }
    let e = parse("[server]\nsession_minutes = 9999999\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.session_minutes"), "{e}");
    let c = parse("[server]\nsession_minutes = 90\n").unwrap();
    assert_eq!(c.server.session_lifetime(), time::Duration::minutes(90));
}

#[test]
fn unknown_key_is_named() {
    let e = parse("[dump]\npth = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("dump") && e.contains("pth"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = parse("[dump]\ncompression_level = \"high\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("dump.compression_level"), "{e}");
}

#[test]
fn env_overrides_keys() {
    let env = vec![
        ("DISKETTE_DUMP_PATH".to_string(), "/var/dumps".to_string()),
        ("DISKETTE_DUMP_AUTO_PURGE".to_string(), "false".to_string()),
        (
            "DISKETTE_STORAGES_PATHS".to_string(),
            "[\"a\", \"b\"]".to_string(),
        ),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let c = Config::from_toml("", Path::new("/srv"), env).unwrap();
    assert_eq!(c.dump.path, Path::new("/var/dumps"));
    assert!(!c.dump.auto_purge);
    assert_eq!(c.storages.paths.len(), 2);
}

#[test]
fn sqlite_urls() {
    let base = Path::new("/srv");
    assert_eq!(
        sqlite_path("sqlite://app.db", base).unwrap(),
        Path::new("/srv/app.db")
    );
    assert_eq!(
        sqlite_path("sqlite:///var/app.db", base).unwrap(),
        Path::new("/var/app.db")
    );
    assert!(sqlite_path("postgres://x", base).is_err());
}

#[test]
fn missing_file_names_the_path() {
    let e = Config::load(Path::new("/nonexistent/diskette.toml"), Vec::new()).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/diskette.toml"), "{e}");
}

#[test]
fn example_file_is_valid() {
    let c = parse(include_str!("../../diskette.example.toml")).unwrap();
    assert_eq!(c.apps.len(), 2);
    assert_eq!(c.dump.mode().unwrap(), 0o644);
    assert_eq!(c.data_database().unwrap(), Path::new("/srv/site/app.db"));
}

#[test]
fn verification_period_and_webhook() {
    let c = parse("").unwrap();
    assert_eq!(c.dump.verify_every.0, Some(Duration::from_secs(86400)));
    assert!(c.notify.webhook_url.is_none());
    let c = parse(
        "[dump]\nverify_every = \"12h\"\n[notify]\nwebhook_url = \"https://hooks.example.org/x\"\non_processed = true\n",
    )
    .unwrap();
    assert_eq!(c.dump.verify_every.0, Some(Duration::from_secs(12 * 3600)));
    assert!(c.notify.on_processed);
    let env = vec![("DISKETTE_DUMP_VERIFY_EVERY".to_string(), "90".to_string())];
    let c = Config::from_toml("", Path::new("/srv"), env).unwrap();
    assert_eq!(c.dump.verify_every.0, Some(Duration::from_secs(90)));
    let e = parse("[dump]\nverify_every = \"often\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("dump.verify_every"), "{e}");
    let e = parse("[notify]\nwebhook_url = \"ftp://x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("notify.webhook_url"), "{e}");
}

#[test]
fn bad_permissions_refused() {
    let e = parse("[dump]\npermissions = \"rw\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("dump.permissions"), "{e}");
}

#[test]
fn trusted_proxies_are_addresses_or_networks() {
    let c =
        parse("[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\"]\n").unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let trusted = &c.server.trusted_proxies;
    assert!(trusted.contains(ip("127.0.0.1")) && trusted.contains(ip("::ffff:127.0.0.1")));
    assert!(trusted.contains(ip("10.200.3.4")) && trusted.contains(ip("::1")));
    assert!(!trusted.contains(ip("127.0.0.2")) && !trusted.contains(ip("11.0.0.1")));
    assert!(parse("").unwrap().server.trusted_proxies.is_empty());
    let e = parse("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.trusted_proxies") && e.contains("10.0.0.0/33"),
        "{e}"
    );
}

#[test]
fn data_database_url_is_sqlite_or_postgres_and_never_shows_a_password() {
    let c = parse("[data]\ndatabase_url = \"postgres://app:pw@db.internal:5433/shop\"\n").unwrap();
    assert_eq!(
        c.data_source().unwrap(),
        DataSource::Postgres("postgres://app:pw@db.internal:5433/shop".into())
    );
    let e = c.data_database().unwrap_err().to_string();
    assert!(
        e.contains("postgres://app@db.internal:5433/shop") && !e.contains("pw"),
        "{e}"
    );
    assert!(matches!(
        parse("[data]\ndatabase_url = \"postgresql://app@localhost/shop\"\n")
            .unwrap()
            .data_source(),
        Ok(DataSource::Postgres(_))
    ));
    let e = parse("[data]\ndatabase_url = \"mysql://root:hunter2@localhost/shop\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data.database_url") && !e.contains("hunter2"),
        "{e}"
    );
    assert_eq!(
        redact_url("postgres://u:p%40ss@h:1/d?password=x&sslmode=disable"),
        "postgres://u@h:1/d"
    );
    assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
}

#[test]
fn an_s3_dump_path_stays_a_url_and_keeps_the_aws_variables() {
    let env = vec![
        ("AWS_REGION".to_string(), "eu-west-1".to_string()),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            "hidden-value".to_string(),
        ),
        ("HOME".to_string(), "/root".to_string()),
    ];
    let c = Config::from_toml(
        "[dump]\npath = \"s3://bucket-1/a/b\"\n",
        Path::new("/srv/site"),
        env,
    )
    .unwrap();
    assert_eq!(c.dump.s3_url(), Some("s3://bucket-1/a/b"));
    let shown = format!("{c:?}");
    assert!(shown.contains("AWS_REGION") && !shown.contains("HOME"));
    assert!(!shown.contains("hidden-value"), "{shown}");
    let e = parse("[dump]\npath = \"s3://\"\n").unwrap_err().to_string();
    assert!(
        e.contains("dump.path") && e.contains("no bucket name"),
        "{e}"
    );
}
