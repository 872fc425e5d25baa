//! What a tar header may ask for beyond its name: entry types and PAX records
//! that other readers act on.

use std::io::{self, Read};

use tar::EntryType;

use super::names::show;
use crate::archive::manifest::MAX_MANIFEST_BYTES;
use crate::error::{Error, Result};

/// The refusal of an entry of type `kind`: anything but a regular file, a
/// directory, a symbolic link or a PAX global header.
pub(super) fn refused_kind(kind: EntryType, raw: &[u8]) -> Error {
    let what = match kind {
        EntryType::Link => "a hard link".to_string(),
        EntryType::Char => "a character device".to_string(),
        EntryType::Block => "a block device".to_string(),
        EntryType::Fifo => "a FIFO".to_string(),
        EntryType::GNUSparse => "a sparse file".to_string(),
        EntryType::Continuous => "a contiguous file".to_string(),
        other => format!("an entry of type {:?}", char::from(other.as_byte())),
    };
    Error::Archive(format!(
        "entry {}: {what} is not allowed (only regular files and directories)",
        show(&String::from_utf8_lossy(raw))
    ))
}

/// The entry's PAX records the tar crate does not act on, but other readers
/// do: a sparse map, or a `path` that differs from the name `raw` the tar
/// crate read (a GNU long name), is refused.
pub(super) fn check_pax<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    raw: &[u8],
    fail: &dyn Fn(io::Error) -> Error,
) -> Result<()> {
    let mut pax_path = None;
    if let Some(exts) = entry.pax_extensions().map_err(fail)? {
        for ext in exts {
            let ext = ext.map_err(fail)?;
            let key = ext.key_bytes();
            if key.starts_with(b"GNU.sparse") {
                return Err(Error::Archive(format!(
                    "entry {}: a sparse file is not allowed (only regular files and directories)",
                    show(&String::from_utf8_lossy(raw))
                )));
            }
            if key == b"path" {
                pax_path = Some(ext.value_bytes().to_vec());
            }
        }
    }
    if pax_path.is_some_and(|p| p != raw) {
        return Err(Error::Archive(format!(
            "entry {}: a GNU long name and a PAX path disagree",
            show(&String::from_utf8_lossy(raw))
        )));
    }
    Ok(())
}

/// A PAX global header is skipped when it only carries metadata we ignore
/// anyway; one that would rename or resize the following entries in other
/// readers (`path`, `size`, sparse maps, ...) is refused.
pub(super) fn check_global_header<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    fail: &dyn Fn(io::Error) -> Error,
) -> Result<()> {
    const HARMLESS: &[&[u8]] = &[
        b"comment", b"mtime", b"atime", b"ctime", b"uid", b"gid", b"uname", b"gname", b"charset",
    ];
    let mut body = Vec::new();
    entry
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(fail)?;
    if body.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::Archive(
            "a PAX global header is larger than 64 KiB".into(),
        ));
    }
    for ext in tar::PaxExtensions::new(&body) {
        let ext = ext.map_err(fail)?;
        if !HARMLESS.contains(&ext.key_bytes()) {
            return Err(Error::Archive(format!(
                "a PAX global header sets {:?} for the whole archive, which is not allowed",
                String::from_utf8_lossy(ext.key_bytes())
            )));
        }
    }
    Ok(())
}
