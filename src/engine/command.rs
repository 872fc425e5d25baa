//! The command engine: `dump_command` writes the fixture on stdout,
//! `load_command` reads it (its path replaces `{file}`, or it comes on stdin).
//!
//! Commands run in the configuration file's directory with the definition's
//! options in the environment: `DISKETTE_APP_NAME`, `DISKETTE_APP_MODELS`,
//! `DISKETTE_APP_EXCLUDES` (space separated), `DISKETTE_NATURAL_FOREIGN` and
//! `DISKETTE_NATURAL_PRIMARY` (`1` or `0`).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Config;
use crate::config::AppConfig;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// Placeholder of the fixture path in a `load_command`.
pub const FILE_PLACEHOLDER: &str = "{file}";

#[derive(Debug, Clone)]
pub struct CommandApp {
    pub name: String,
    pub argv: Vec<String>,
    pub app: AppConfig,
}

impl CommandApp {
    /// The definition whose fixture file is `filename` and that has a load command.
    pub fn for_load(config: &Config, filename: &str) -> Option<CommandApp> {
        config.apps.iter().find_map(|app| {
            let argv = app.load_command.as_ref()?;
            (super::resolved::fixture_filename(app) == filename).then(|| CommandApp {
                name: app.name.clone(),
                argv: argv.clone(),
                app: app.clone(),
            })
        })
    }

    pub fn load(&self, config: &Config, path: &Path, progress: &dyn Progress) -> Result<()> {
        let uses_placeholder = self.argv.iter().any(|a| a.contains(FILE_PLACEHOLDER));
        let file = path.to_string_lossy();
        let argv: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.replace(FILE_PLACEHOLDER, &file))
            .collect();
        let stdin = if uses_placeholder {
            Stdio::null()
        } else {
            Stdio::from(File::open(path).ctx("open", path)?)
        };
        if config.data.ignore_nonexistent {
            // The command loads the fixture its own way: the flag cannot reach it.
            progress.warn(&format!(
                "--ignorenonexistent does not apply to {:?}: it is loaded by its load_command",
                self.name
            ));
        }
        let mut cmd = self.command(config, &argv);
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        progress.log(&format!("Loading {} with: {}", self.name, argv.join(" ")));
        let out = run(&self.name, cmd, config.command_timeout())?;
        for line in out.stdout.lines().chain(out.stderr.lines()) {
            progress.log(&format!("  {line}"));
        }
        Ok(())
    }

    fn command(&self, config: &Config, argv: &[String]) -> Command {
        command_for(&self.app, config, argv)
    }
}

fn command_for(app: &AppConfig, config: &Config, argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&config.base_dir)
        .env("DISKETTE_APP_NAME", &app.name)
        .env("DISKETTE_APP_MODELS", app.models.join(" "))
        .env("DISKETTE_APP_EXCLUDES", app.excludes.join(" "))
        .env(
            "DISKETTE_NATURAL_FOREIGN",
            if app.natural_foreign { "1" } else { "0" },
        )
        .env(
            "DISKETTE_NATURAL_PRIMARY",
            if app.natural_primary { "1" } else { "0" },
        );
    cmd
}

/// Run a definition's `dump_command`, its stdout written to `out`.
/// Returns the bytes written; stderr lines go to the logs.
pub fn dump(
    app: &AppConfig,
    argv: &[String],
    config: &Config,
    out: &Path,
    progress: &dyn Progress,
) -> Result<u64> {
    let file = File::create(out).ctx("create", out)?;
    let mut cmd = command_for(app, config, argv);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::piped());
    progress.log(&format!("Dumping {} with: {}", app.name, argv.join(" ")));
    let result = run(&app.name, cmd, config.command_timeout())?;
    for line in result.stderr.lines() {
        progress.log(&format!("  {line}"));
    }
    let size = std::fs::metadata(out).ctx("read metadata of", out)?.len();
    if size == 0 {
        return Err(Error::Command(format!(
            "application {:?}: {} wrote nothing on its standard output",
            app.name, argv[0]
        )));
    }
    Ok(size)
}

struct Output {
    stdout: String,
    stderr: String,
}

fn run(name: &str, mut cmd: Command, timeout: Option<Duration>) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().map_err(|e| {
        Error::Command(format!("application {name:?}: cannot run {program:?}: {e}"))
    })?;
    // Read the pipes in threads so a chatty command cannot block on a full pipe.
    let stdout = child.stdout.take().map(read_in_thread);
    let stderr = child.stderr.take().map(read_in_thread);
    let status = wait(&mut child, timeout).map_err(|e| match e {
        WaitError::Timeout(t) => Error::Command(format!(
            "application {name:?}: {program} did not finish within {} s and was stopped",
            t.as_secs()
        )),
        WaitError::Io(e) => {
            Error::Command(format!("application {name:?}: waiting for {program}: {e}"))
        }
    })?;
    let stdout = stdout
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = stderr
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::Command(format!(
            "application {name:?}: {program} failed ({status}){}{}",
            if tail.is_empty() { "" } else { ": " },
            tail.join(" | ")
        )));
    }
    Ok(Output { stdout, stderr })
}

fn read_in_thread<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

enum WaitError {
    Timeout(Duration),
    Io(std::io::Error),
}

fn wait(
    child: &mut Child,
    timeout: Option<Duration>,
) -> std::result::Result<std::process::ExitStatus, WaitError> {
    let Some(limit) = timeout else {
        return child.wait().map_err(WaitError::Io);
    };
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(WaitError::Io)? {
            return Ok(status);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(WaitError::Timeout(limit));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Recorder;

    fn cfg(dir: &Path, timeout: u64) -> Config {
        Config::from_toml(
            &format!("[data]\ncommand_timeout = {timeout}\n"),
            dir,
            Vec::new(),
        )
        .unwrap()
    }

    fn app(name: &str) -> AppConfig {
        AppConfig {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn dump_captures_stdout_and_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.json");
        let rec = Recorder::default();
        let argv = vec!["sh".into(), "-c".into(), "echo '[]'; echo note >&2".into()];
        let n = dump(&app("x"), &argv, &cfg(dir.path(), 0), &out, &rec).unwrap();
        assert_eq!(n, 3);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "[]\n");
        assert!(rec.lines().iter().any(|l| l.contains("note")));

        let argv = vec!["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()];
        let e = dump(&app("x"), &argv, &cfg(dir.path(), 0), &out, &rec)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"x\"") && e.contains("boom") && e.contains('3'),
            "{e}"
        );

        let argv = vec!["sleep".into(), "5".into()];
        let e = dump(&app("x"), &argv, &cfg(dir.path(), 1), &out, &rec)
            .unwrap_err()
            .to_string();
        assert!(e.contains("within 1 s"), "{e}");

        let argv = vec!["/nonexistent/program".into()];
        let e = dump(&app("x"), &argv, &cfg(dir.path(), 0), &out, &rec)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot run"), "{e}");
    }

    #[test]
    fn ignorenonexistent_is_named_as_not_applying_to_a_load_command() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = dir.path().join("x.json");
        std::fs::write(&fixture, "[]").unwrap();
        let load = |ignore: bool| {
            let mut config = cfg(dir.path(), 0);
            config.data.ignore_nonexistent = ignore;
            let app = CommandApp {
                name: "shop".into(),
                argv: vec!["cat".into()],
                app: app("shop"),
            };
            let rec = Recorder::default();
            app.load(&config, &fixture, &rec).unwrap();
            rec.lines()
        };
        let warned = |lines: &[String]| {
            lines
                .iter()
                .any(|l| l.starts_with("warning: --ignorenonexistent") && l.contains("\"shop\""))
        };
        assert!(warned(&load(true)), "{:?}", load(true));
        assert!(!warned(&load(false)));
    }
}
