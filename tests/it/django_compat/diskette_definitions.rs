//! Diskette's definitions on the Django test site: `dump --appconf` with the
//! site's own `DISKETTE_APPS`, `apps --generate` against Diskette's
//! `diskette_apps` and Django's `dumpdata`, and the command lines of
//! `dump --no-archive` run with Django's own tool.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::compare::{archive_files, tempdir};
use super::site::*;

/// `[data]` and `[dump]` of a configuration dumping the site's database into
/// `dir/dumps`; the one table with a custom name is mapped to its model.
fn base_config(site: &Site) -> String {
    format!(
        "[data]\ndatabase_url = {}\nlabels = {{ legacy_archived = \"shop_app.archived\" }}\n\n\
         [dump]\npath = \"dumps\"\n",
        sqlite_url(&site.db())
    )
}

/// The data files of an archive, parsed, and its manifest's `datas`.
fn data_of(archive: &Path) -> (BTreeMap<String, Value>, Value) {
    let files = archive_files(archive);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let data = files
        .iter()
        .filter(|(name, _)| name.starts_with("data/"))
        .map(|(name, bytes)| (name.clone(), serde_json::from_slice(bytes).unwrap()))
        .collect();
    (data, manifest["datas"].clone())
}

/// The site's `DISKETTE_APPS` setting, as JSON.
fn diskette_apps_setting(site: &Site) -> String {
    site.manage(&[
        "shell",
        "--no-imports",
        "-c",
        "import json; from django.conf import settings; print(json.dumps(settings.DISKETTE_APPS))",
    ])
}

/// The TOML definitions equal to the test site's `DISKETTE_APPS`.
const SITE_APPS_TOML: &str = r#"
[[apps]]
name = "django.contrib.sites"
natural_foreign = true
models = ["sites"]

[[apps]]
name = "django.contrib.auth"
natural_foreign = true
models = ["auth.Group", "auth.User"]

[[apps]]
name = "blog"
models = ["blog"]
"#;

#[test]
fn appconf_with_the_sites_diskette_apps_dumps_like_the_same_toml_definitions() {
    let tmp = tempdir();
    let src = Site::new(tmp.path().join("src")).seed();
    let appconf = write_config(tmp.path(), "apps.json", &diskette_apps_setting(&src));
    let base = base_config(&src);
    let toml = write_config(tmp.path(), "toml.toml", &format!("{base}{SITE_APPS_TOML}"));
    let plain = write_config(tmp.path(), "plain.toml", &base);

    diskette_ok(
        &toml,
        &["dump", "--no-storages", "--filename", "toml.tar.gz"],
    );
    diskette_ok(
        &plain,
        &[
            "dump",
            "--no-storages",
            "--filename",
            "json.tar.gz",
            "--appconf",
            appconf.to_str().unwrap(),
        ],
    );
    let dumps = tmp.path().join("dumps");
    let (json_data, json_datas) = data_of(&dumps.join("json.tar.gz"));
    let (toml_data, toml_datas) = data_of(&dumps.join("toml.tar.gz"));
    assert_eq!(
        json_datas,
        serde_json::json!([
            "data/djangocontribsites.json",
            "data/djangocontribauth.json",
            "data/blog.json"
        ])
    );
    assert_eq!(json_datas, toml_datas);
    assert_eq!(json_data, toml_data);
    // Not empty: the seeded users and articles are there.
    let auth = json_data["data/djangocontribauth.json"].as_array().unwrap();
    assert!(auth.iter().any(|o| o["model"] == "auth.user"), "{auth:?}");
    assert_eq!(
        json_data["data/blog.json"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["model"] == "blog.article")
            .count(),
        4
    );
}

/// Lowercase model labels of Diskette's `diskette_apps --format json`, by
/// app label, each app's sorted: Diskette lists them in class registration
/// order, which the database does not hold (content type ids follow the
/// migration state's order).
fn diskette_apps_models(site: &Site) -> Vec<(String, Vec<String>)> {
    let out = site.manage(&["diskette_apps", "--format", "json"]);
    let defs: Value = serde_json::from_str(&out).unwrap();
    defs.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let mut models: Vec<String> = d[1]["models"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_lowercase())
                .collect();
            models.sort();
            let app = models[0].split('.').next().unwrap().to_string();
            (app, models)
        })
        .collect()
}

#[test]
fn generated_definitions_cover_every_model_once_as_diskette_apps_and_dumpdata_do() {
    let tmp = tempdir();
    let src = Site::new(tmp.path().join("src")).seed();
    let base = base_config(&src);
    let plain = write_config(tmp.path(), "plain.toml", &base);

    // Without its table mapped, a model is left out, with a warning.
    let unmapped = write_config(
        tmp.path(),
        "unmapped.toml",
        &format!("[data]\ndatabase_url = {}\n", sqlite_url(&src.db())),
    );
    let out = diskette(&unmapped, &["apps", "--generate", "--app", "shop_app"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("model shop_app.archived is left out"),
        "{}",
        output_text(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("archived"));

    let toml_defs = diskette_ok(&plain, &["apps", "--generate"]);
    let json_path = tmp.path().join("generated.json");
    diskette_ok(
        &plain,
        &[
            "apps",
            "--generate",
            "--format",
            "json",
            "--destination",
            json_path.to_str().unwrap(),
        ],
    );
    let generated: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let ours: Vec<(String, Vec<String>)> = generated
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let models = d[1]["models"].as_array().unwrap();
            let models = models.iter().map(|m| m.as_str().unwrap().to_string());
            (d[0].as_str().unwrap().to_string(), models.collect())
        })
        .collect();
    // The applications Diskette finds, in its order, with the same models.
    let sorted: Vec<(String, Vec<String>)> = ours
        .iter()
        .map(|(app, models)| {
            let mut models = models.clone();
            models.sort();
            (app.clone(), models)
        })
        .collect();
    assert_eq!(sorted, diskette_apps_models(&src));
    // Every model once.
    let mut all: Vec<&String> = ours.iter().flat_map(|(_, m)| m).collect();
    let count = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), count, "a model is listed twice");

    // Both outputs dump the same archive.
    let with_toml = write_config(
        tmp.path(),
        "generated.toml",
        &format!("{base}\n{toml_defs}"),
    );
    diskette_ok(
        &with_toml,
        &["dump", "--no-storages", "--filename", "toml.tar.gz"],
    );
    diskette_ok(
        &plain,
        &[
            "dump",
            "--no-storages",
            "--filename",
            "json.tar.gz",
            "--appconf",
            json_path.to_str().unwrap(),
        ],
    );
    let dumps = tmp.path().join("dumps");
    let (toml_data, toml_datas) = data_of(&dumps.join("toml.tar.gz"));
    let (json_data, json_datas) = data_of(&dumps.join("json.tar.gz"));
    assert_eq!((&toml_data, &toml_datas), (&json_data, &json_datas));

    // Each fixture is what Django's dumpdata gives for the same models.
    for (app, models) in &ours {
        let mut args = vec!["dumpdata"];
        args.extend(models.iter().map(String::as_str));
        args.push("--natural-foreign");
        let django: Value = serde_json::from_str(&src.manage(&args)).unwrap();
        assert_eq!(
            toml_data[&format!("data/{app}.json")],
            django,
            "definition {app}"
        );
    }
}

/// Run one printed command line in the site's directory, `python` being the venv's.
fn run_line(site: &Site, line: &str) {
    let bin = venv_python().parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let out = Command::new("sh")
        .args(["-c", line])
        .current_dir(&site.dir)
        .env("PATH", path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("DJANGO_SETTINGS_MODULE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{line}:\n{}", output_text(&out));
}

#[test]
fn no_archive_command_lines_make_the_fixtures_of_our_archive_with_django() {
    let tmp = tempdir();
    let src = Site::new(tmp.path().join("src")).seed();
    let appconf = write_config(tmp.path(), "apps.json", &diskette_apps_setting(&src));
    let drain = "\n[[apps]]\nname = \"rest\"\nis_drain = true\n";
    let config = write_config(
        tmp.path(),
        "diskette.toml",
        &format!("{}{SITE_APPS_TOML}{drain}", base_config(&src)),
    );
    let by_django = tmp.path().join("by django");
    let script = diskette_ok(
        &config,
        &[
            "dump",
            "--no-archive",
            "--indent",
            "2",
            "--destination",
            by_django.to_str().unwrap(),
        ],
    );
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(lines.len(), 4, "{script}");
    assert!(
        lines[1].starts_with(
            "python manage.py dumpdata --indent=2 auth.group auth.user --natural-foreign "
        ),
        "{script}"
    );
    std::fs::create_dir_all(&by_django).unwrap();
    for line in &lines {
        run_line(&src, line);
    }
    assert!(
        !tmp.path().join("dumps").exists(),
        "--no-archive wrote an archive"
    );

    diskette_ok(
        &config,
        &[
            "dump",
            "--no-storages",
            "--indent",
            "2",
            "--filename",
            "ours.tar.gz",
        ],
    );
    let archive = tmp.path().join("dumps/ours.tar.gz");
    let (_, datas) = data_of(&archive);
    assert_eq!(datas.as_array().unwrap().len(), 4);
    // What Django wrote, indented as asked. (Compared as JSON: the engine
    // writes fields in column order, Django in declaration order.)
    for (name, bytes) in archive_files(&archive) {
        if let Some(file) = name.strip_prefix("data/") {
            let django = std::fs::read(by_django.join(file)).unwrap();
            let text = String::from_utf8(django.clone()).unwrap();
            assert!(text.starts_with("[\n{\n  \"model\": "), "{name}: {text}");
            let ours: Value = serde_json::from_slice(&bytes).unwrap();
            let django: Value = serde_json::from_slice(&django).unwrap();
            assert_eq!(ours, django, "{name}");
        }
    }

    // Diskette's definitions give the same lines.
    let with_appconf = diskette_ok(
        &config,
        &[
            "dump",
            "--no-archive",
            "--indent",
            "2",
            "--destination",
            by_django.to_str().unwrap(),
            "--appconf",
            appconf.to_str().unwrap(),
        ],
    );
    assert_eq!(with_appconf, lines[..3].join("\n") + "\n");
}
