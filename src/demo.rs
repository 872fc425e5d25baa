//! `diskette demo`: a ready-to-try workspace (configuration, an application
//! database, a media tree) and an admin user, then the server.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::registry::{Password, Registry, Username};

/// Environment variable giving the demo admin's password (else one is generated).
pub const PASSWORD_ENV: &str = "DISKETTE_DEMO_PASSWORD";
pub const ADMIN: &str = "admin";

const CONFIG: &str = r#"# Diskette demo workspace: relative paths resolve against this directory.
[server]
addr = "127.0.0.1:8000"

[registry]
database_url = "sqlite://diskette-registry.db"

[dump]
path = "dumps"

[data]
database_url = "sqlite://app.db"

[storages]
basepath = "."
paths = ["media"]
excludes = ["*.tmp"]

[[apps]]
name = "auth"
comments = "Accounts"
models = ["auth"]

[[apps]]
name = "blog"
comments = "Categories, articles and comments"
models = ["blog"]

[load]
storages_basepath = "restored"
"#;

/// Create the workspace in `dir` unless it exists; returns its configuration file.
pub fn create_workspace(dir: &Path) -> Result<PathBuf> {
    let config_path = dir.join(crate::config::DEFAULT_CONFIG_FILE);
    if config_path.exists() {
        return Ok(config_path);
    }
    std::fs::create_dir_all(dir).ctx("create directory", dir)?;
    create_database(&dir.join("app.db"))?;
    create_media(&dir.join("media"))?;
    std::fs::create_dir_all(dir.join("dumps")).ctx("create directory", dir.join("dumps"))?;
    // The configuration goes last: its presence marks a complete workspace.
    std::fs::write(&config_path, CONFIG).ctx("write", &config_path)?;
    Ok(config_path)
}

/// Make sure the admin exists; returns the password to print when it was set now.
pub async fn ensure_admin(registry: &Registry) -> Result<Option<String>> {
    let from_env = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
    let exists = registry.user(ADMIN).await?.is_some();
    let username: Username = ADMIN.parse().map_err(Error::Internal)?;
    match (exists, from_env) {
        (true, None) => Ok(None),
        (true, Some(pw)) => {
            registry
                .set_password(ADMIN, &Password::new(pw.clone()).map_err(Error::Usage)?)
                .await?;
            Ok(Some(pw))
        }
        (false, pw) => {
            let pw = pw.unwrap_or_else(|| crate::users::random_token(12));
            registry
                .create_user(
                    &username,
                    &Password::new(pw.clone()).map_err(Error::Usage)?,
                    true,
                )
                .await?;
            Ok(Some(pw))
        }
    }
}

const CATEGORIES: &[&str] = &[
    "News",
    "Tutorials",
    "Releases",
    "Community",
    "Security",
    "Performance",
    "Design",
    "Ops",
];
const WORDS: &[&str] = &[
    "archive", "backup", "restore", "media", "fixture", "checksum", "storage", "registry",
    "deploy", "stream", "gzip", "server", "admin", "staff", "dump", "load", "option", "record",
    "process", "fast",
];

fn words(seed: usize, n: usize) -> String {
    (0..n)
        .map(|i| WORDS[(seed * 7 + i * 13) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn create_database(path: &Path) -> Result<()> {
    let db_err = |e: rusqlite::Error| Error::Data(format!("demo database: {e}"));
    let mut conn = rusqlite::Connection::open(path).map_err(db_err)?;
    let tx = conn.transaction().map_err(db_err)?;
    tx.execute_batch(
        "CREATE TABLE auth_user (
            id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT NOT NULL,
            is_staff INTEGER NOT NULL, date_joined TEXT NOT NULL);
         CREATE TABLE blog_category (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL, slug TEXT NOT NULL UNIQUE);
         CREATE TABLE blog_article (
            id INTEGER PRIMARY KEY, category_id INTEGER NOT NULL REFERENCES blog_category (id),
            author_id INTEGER NOT NULL REFERENCES auth_user (id), title TEXT NOT NULL,
            slug TEXT NOT NULL UNIQUE, body TEXT NOT NULL, cover TEXT, published_at TEXT NOT NULL);
         CREATE TABLE blog_comment (
            id INTEGER PRIMARY KEY, article_id INTEGER NOT NULL REFERENCES blog_article (id),
            author_id INTEGER REFERENCES auth_user (id), body TEXT NOT NULL, created_at TEXT NOT NULL);",
    )
    .map_err(db_err)?;
    for i in 1..=25 {
        tx.execute(
            "INSERT INTO auth_user (id, username, email, is_staff, date_joined) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![i, format!("user{i}"), format!("user{i}@example.org"), i % 5 == 0, format!("2024-01-{:02}T10:00:00", i)],
        )
        .map_err(db_err)?;
    }
    for (i, name) in CATEGORIES.iter().enumerate() {
        tx.execute(
            "INSERT INTO blog_category (id, name, slug) VALUES (?1, ?2, ?3)",
            rusqlite::params![i + 1, name, name.to_lowercase()],
        )
        .map_err(db_err)?;
    }
    for i in 1..=150usize {
        tx.execute(
            "INSERT INTO blog_article (id, category_id, author_id, title, slug, body, cover, published_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                i,
                i % CATEGORIES.len() + 1,
                i % 25 + 1,
                format!("Article {i}: {}", words(i, 4)),
                format!("article-{i}"),
                words(i, 60),
                format!("images/2024/{:02}/picture-{}.bmp", i % 3 + 1, i % 8),
                format!("2024-{:02}-{:02}T09:30:00", i % 12 + 1, i % 28 + 1),
            ],
        )
        .map_err(db_err)?;
    }
    for i in 1..=320usize {
        tx.execute(
            "INSERT INTO blog_comment (id, article_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                i,
                i % 150 + 1,
                if i % 4 == 0 { None } else { Some(i % 25 + 1) },
                words(i * 3, 12),
                format!("2024-{:02}-{:02}T18:00:00", i % 12 + 1, i % 28 + 1)
            ],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

fn create_media(media: &Path) -> Result<()> {
    for month in 1..=3u8 {
        let dir = media.join(format!("images/2024/{month:02}"));
        std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        for n in 0..8u8 {
            let file = dir.join(format!("picture-{n}.bmp"));
            std::fs::write(
                &file,
                bmp(48, 32, month.wrapping_mul(70), n.wrapping_mul(30)),
            )
            .ctx("write", &file)?;
        }
    }
    let avatars = media.join("avatars");
    std::fs::create_dir_all(&avatars).ctx("create directory", &avatars)?;
    for n in 1..=5u8 {
        let file = avatars.join(format!("user{n}.svg"));
        let hue = u16::from(n) * 60;
        let svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\">\
             <circle cx=\"32\" cy=\"32\" r=\"30\" fill=\"hsl({hue},60%,55%)\"/>\
             <text x=\"32\" y=\"40\" font-size=\"24\" text-anchor=\"middle\" fill=\"#fff\">U{n}</text></svg>\n"
        );
        std::fs::write(&file, svg).ctx("write", &file)?;
    }
    let docs = media.join("documents/private");
    std::fs::create_dir_all(&docs).ctx("create directory", &docs)?;
    std::fs::write(
        docs.join("notes.txt"),
        "Demo document kept in a nested folder.\n",
    )
    .ctx("write", &docs)?;
    std::fs::write(
        media.join("documents/draft.tmp"),
        "excluded by the demo configuration\n",
    )
    .ctx("write", &docs)?;
    Ok(())
}

/// A small uncompressed 24-bit BMP with a colour gradient.
fn bmp(width: u32, height: u32, red: u8, green: u8) -> Vec<u8> {
    let row = (width * 3).div_ceil(4) * 4;
    let data_len = row * height;
    let mut out = Vec::with_capacity(54 + data_len as usize);
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&(54 + data_len).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&[0; 16]);
    for y in 0..height {
        for x in 0..width {
            let blue = ((x * 255) / width.max(1)) as u8;
            let g = green.wrapping_add(((y * 255) / height.max(1)) as u8);
            out.extend_from_slice(&[blue, g, red]);
        }
        out.extend(std::iter::repeat_n(0u8, (row - width * 3) as usize));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn workspace_is_created_once_and_configures() {
        let dir = tempfile::tempdir().unwrap();
        let path = create_workspace(&dir.path().join("demo")).unwrap();
        let config = Config::load(&path, Vec::new()).unwrap();
        assert_eq!(config.apps.len(), 2);
        let conn = rusqlite::Connection::open(config.data_database().unwrap()).unwrap();
        let rows: i64 = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM auth_user) + (SELECT COUNT(*) FROM blog_category) \
                 + (SELECT COUNT(*) FROM blog_article) + (SELECT COUNT(*) FROM blog_comment)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(rows > 300, "{rows}");
        assert!(
            dir.path()
                .join("demo/media/images/2024/02/picture-3.bmp")
                .is_file()
        );
        // A second run keeps what is there.
        std::fs::write(dir.path().join("demo/marker"), "x").unwrap();
        create_workspace(&dir.path().join("demo")).unwrap();
        assert!(dir.path().join("demo/marker").exists());
    }

    #[test]
    fn bmp_sizes() {
        let b = bmp(3, 2, 1, 2);
        assert_eq!(&b[..2], b"BM");
        assert_eq!(b.len(), 54 + 12 * 2);
    }
}
