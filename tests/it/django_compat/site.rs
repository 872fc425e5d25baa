//! The Python side: a virtualenv with Django and Diskette 0.6.0, copies of
//! the Django project in `tests/django/`, and our binary run beside them.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_diskette");
const PROJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/django");
const VENV_ENV: &str = "DISKETTE_TEST_DJANGO_VENV";

// ---------------------------------------------------------------------------
// The Python virtualenv, built once per test process.

pub(super) fn venv_python() -> &'static Path {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(prepare_venv) {
        Ok(python) => python,
        Err(e) => panic!(
            "the Django compatibility tests need a Python virtualenv with Django and \
             diskette 0.6.0: {e}\n(build one with `tests/django/setup_venv.sh DIR` and \
             set {VENV_ENV}=DIR, or give these tests access to PyPI)"
        ),
    }
}

pub(super) fn prepare_venv() -> Result<PathBuf, String> {
    let requirements = fs::read_to_string(Path::new(PROJECT).join("requirements.txt"))
        .map_err(|e| format!("cannot read tests/django/requirements.txt: {e}"))?;
    if let Some(dir) = std::env::var_os(VENV_ENV).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.join("bin/python").exists() {
            build_venv(&dir)?;
        }
        return check_venv(&dir, &requirements);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("django-venv");
    let stamp = dir.join("diskette-compat-requirements.txt");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
        return check_venv(&dir, &requirements);
    }
    // Built beside its final place and renamed into it, so that a concurrent
    // or interrupted build never leaves a half-installed venv in use.
    let building = dir.with_file_name(format!("django-venv.building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&building);
    eprintln!(
        "building a Python virtualenv for the Django tests in {}",
        dir.display()
    );
    let built = build_venv(&building);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&building);
        return Err(e);
    }
    if fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
        // Another test process finished first.
        let _ = fs::remove_dir_all(&building);
    } else {
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&building, &dir)
            .map_err(|e| format!("cannot move the virtualenv into {}: {e}", dir.display()))?;
    }
    check_venv(&dir, &requirements)
}

pub(super) fn build_venv(dir: &Path) -> Result<(), String> {
    let out = Command::new("sh")
        .arg(Path::new(PROJECT).join("setup_venv.sh"))
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run tests/django/setup_venv.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tests/django/setup_venv.sh {} failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The venv's interpreter, once it is known to import the pinned versions.
pub(super) fn check_venv(dir: &Path, requirements: &str) -> Result<PathBuf, String> {
    let pin = |name: &str| {
        requirements
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix("=="))
            .map(str::trim)
            .unwrap_or("?")
            .to_string()
    };
    let expected = format!("{} {}", pin("Django"), pin("diskette"));
    let python = dir.join("bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import django, diskette; print(django.get_version(), diskette.__version__)",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || found != expected {
        return Err(format!(
            "{} does not provide Django and diskette {expected} (found {found:?}) {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(python)
}

// ---------------------------------------------------------------------------
// Django sites: independent copies of tests/django, each with its own database.

pub(super) struct Site {
    pub(super) dir: PathBuf,
    /// Django's TIME_ZONE setting (the project's default is UTC).
    time_zone: Option<&'static str>,
}

impl Site {
    /// A fresh copy of the project with an empty migrated database.
    pub(super) fn new(dir: PathBuf) -> Site {
        Site::in_time_zone(dir, None)
    }

    pub(super) fn in_time_zone(dir: PathBuf, time_zone: Option<&'static str>) -> Site {
        copy_project(Path::new(PROJECT), &dir);
        let site = Site { dir, time_zone };
        site.manage(&["migrate", "--no-input", "-v", "0"]);
        site
    }

    /// Fill the site with the `seed_compat` command's rows and a media tree.
    pub(super) fn seed(self) -> Site {
        self.manage(&["seed_compat"]);
        make_media(&self.media());
        self
    }

    pub(super) fn db(&self) -> PathBuf {
        self.dir.join("db.sqlite3")
    }

    pub(super) fn media(&self) -> PathBuf {
        self.dir.join("media")
    }

    pub(super) fn python_command(&self) -> Command {
        let mut cmd = Command::new(venv_python());
        cmd.current_dir(&self.dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("DJANGO_SETTINGS_MODULE");
        match self.time_zone {
            Some(zone) => cmd.env("DJANGO_TIME_ZONE", zone),
            None => cmd.env_remove("DJANGO_TIME_ZONE"),
        };
        cmd
    }

    /// Run `manage.py ARGS` in the site; its stdout, or a panic with everything it said.
    pub(super) fn manage(&self, args: &[&str]) -> String {
        let out = self
            .python_command()
            .arg("manage.py")
            .args(args)
            .output()
            .expect("run manage.py");
        assert!(
            out.status.success(),
            "manage.py {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            output_text(&out)
        );
        String::from_utf8(out.stdout).expect("manage.py output is UTF-8")
    }

    /// `[python, /abs/manage.py, ARGS...]` as a TOML array, for a command-engine definition.
    pub(super) fn manage_argv(&self, args: &[&str]) -> String {
        let mut argv = vec![
            venv_python().display().to_string(),
            self.dir.join("manage.py").display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        toml::Value::Array(argv.into_iter().map(toml::Value::String).collect()).to_string()
    }
}

pub(super) fn copy_project(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let skip = ["__pycache__", "db.sqlite3", "media", "var"];
        if skip.iter().any(|s| name == OsStr::new(s)) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_project(&path, &to.join(&name));
        } else {
            fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// A media tree with names holding spaces and non-ASCII, binary content, an
/// empty directory, nested directories and a file the `*.tmp` exclude drops.
pub(super) fn make_media(media: &Path) {
    let files: &[(&str, &[u8])] = &[
        ("articles/crème 1.png", b"\x89PNG\r\n\x1a\n fake cover"),
        ("articles/a b.png", b"another cover"),
        ("documents/annual report 2024.txt", b"Report\n"),
        ("documents/résumé café.txt", "Grüße, ünïcödé ✓\n".as_bytes()),
        ("documents/日本/説明.txt", "説明\n".as_bytes()),
        ("uploads/.hidden", b"hidden"),
        ("uploads/deep/er/still.txt", b"deep"),
        ("uploads/draft.tmp", b"excluded by *.tmp"),
    ];
    for (name, content) in files {
        let path = media.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
    }
    let blob: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(media.join("uploads/blob.bin"), blob).unwrap();
    fs::create_dir_all(media.join("empty")).unwrap();
}

// ---------------------------------------------------------------------------
// Our binary.

pub(super) fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

/// A path or string as a TOML string literal.
pub(super) fn q(value: impl AsRef<OsStr>) -> String {
    let text = value.as_ref().to_str().expect("UTF-8 path").to_string();
    toml::Value::String(text).to_string()
}

pub(super) fn sqlite_url(db: &Path) -> String {
    assert!(db.is_absolute());
    q(format!("sqlite://{}", db.display()))
}

pub(super) fn diskette(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        // Load commands inherit it: keep the project copies free of bytecode.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("DISKETTE_CONFIG")
        .output()
        .expect("run diskette")
}

pub(super) fn diskette_ok(config: &Path, args: &[&str]) -> String {
    let out = diskette(config, args);
    assert!(
        out.status.success(),
        "diskette {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        output_text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(super) fn output_text(out: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(super) fn b2sum(path: &Path) -> String {
    let mut state = blake2b_simd::Params::new().hash_length(64).to_state();
    state.update(&fs::read(path).unwrap());
    state.finalize().to_hex().to_string()
}
