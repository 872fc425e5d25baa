//! The tree the archive's entries build: each name claimed once, as a file, a
//! directory or a link; directories created as they appear; links created
//! last; the whole checked against the manifest.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::DIR_MODE;
use super::names::show;
use crate::archive::manifest::Manifest;
use crate::archive::{DATA_DIR, MANIFEST};
use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File,
    /// A symbolic link, created only once the whole archive is validated.
    Link,
    /// `explicit`: the archive has an entry for it (not only for its children).
    Dir {
        explicit: bool,
    },
}

pub(super) struct Tree {
    root: PathBuf,
    nodes: BTreeMap<String, Node>,
    /// (name, target) of the symbolic links, made last.
    links: Vec<(String, String)>,
}

impl Tree {
    /// A tree under the existing, empty directory `root`.
    pub(super) fn new(root: PathBuf) -> Self {
        Tree {
            root,
            nodes: BTreeMap::new(),
            links: Vec::new(),
        }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Record a file about to be written, creating its parent directories.
    pub(super) fn claim_file(&mut self, name: &str) -> Result<()> {
        self.parents(name)?;
        match self.nodes.get(name) {
            Some(Node::File | Node::Link) => Err(Error::Archive(format!(
                "entry {}: appears twice in the archive",
                show(name)
            ))),
            Some(Node::Dir { .. }) => Err(Error::Archive(format!(
                "entry {}: a file where the archive already has a directory",
                show(name)
            ))),
            None => {
                self.nodes.insert(name.to_string(), Node::File);
                Ok(())
            }
        }
    }

    /// Record a symbolic link, to be created by [`Tree::make_links`]; its
    /// `target` is checked by [`Tree::check_links`].
    pub(super) fn add_link(&mut self, shown: &str, name: String, target: String) -> Result<()> {
        self.parents(&name)?;
        if self.nodes.contains_key(&name) {
            return Err(Error::Archive(format!(
                "entry {shown}: appears twice in the archive"
            )));
        }
        self.nodes.insert(name.clone(), Node::Link);
        self.links.push((name, target));
        Ok(())
    }

    /// Record and create a directory; `explicit` when the archive has an
    /// entry for it (not only for its children).
    pub(super) fn add_dir(&mut self, name: &str, explicit: bool) -> Result<()> {
        if name == MANIFEST && explicit {
            return Err(Error::Archive(format!(
                "{MANIFEST} is a directory, not a file"
            )));
        }
        self.parents(name)?;
        match self.nodes.get_mut(name) {
            Some(Node::File | Node::Link) => Err(Error::Archive(format!(
                "entry {}/: a directory where the archive already has a file",
                show(name)
            ))),
            Some(Node::Dir { explicit: true }) if explicit => Err(Error::Archive(format!(
                "entry {}/: appears twice in the archive",
                show(name)
            ))),
            Some(Node::Dir { explicit: seen }) => {
                *seen |= explicit;
                Ok(())
            }
            None => {
                let path = self.root.join(name);
                // `create`, not `create_all`: each component is made (and
                // checked absent) on its own, inside our private directory.
                fs::DirBuilder::new()
                    .mode(DIR_MODE)
                    .create(&path)
                    .ctx("create directory", &path)?;
                self.nodes.insert(name.to_string(), Node::Dir { explicit });
                Ok(())
            }
        }
    }

    fn parents(&mut self, name: &str) -> Result<()> {
        for (i, _) in name.match_indices('/') {
            let parent = &name[..i];
            match self.nodes.get(parent) {
                Some(Node::Dir { .. }) => {}
                Some(Node::File | Node::Link) => {
                    return Err(Error::Archive(format!(
                        "entry {}: {} is a file in the archive, not a directory",
                        show(name),
                        show(parent)
                    )));
                }
                None => self.add_dir(parent, false)?,
            }
        }
        Ok(())
    }

    /// Every entry lies under `manifest.json`, `data/` or a listed storage;
    /// every listed data file is a file and every listed storage a directory.
    pub(super) fn check_layout(&self, manifest: &Manifest) -> Result<()> {
        let storages = manifest.storages.as_deref().unwrap_or_default();
        for (name, node) in &self.nodes {
            let allowed = name == MANIFEST
                || under(name, DATA_DIR)
                || storages.iter().any(|s| under(name, s))
                // A parent directory of a listed storage (`media/` of `media/private`).
                || (matches!(node, Node::Dir { .. }) && storages.iter().any(|s| under(s, name)));
            if !allowed {
                return Err(Error::Archive(format!(
                    "entry {} lies outside {MANIFEST}, {DATA_DIR}/ and the storages listed in {MANIFEST}",
                    show(name)
                )));
            }
        }
        self.check_listed(manifest)
    }

    /// What the manifest lists is in the archive, as the right kind of node.
    fn check_listed(&self, manifest: &Manifest) -> Result<()> {
        for d in manifest.datas.as_deref().unwrap_or_default() {
            let refuse = |what: &str| {
                Err(Error::Archive(format!(
                    "data file {} listed in {MANIFEST} {what}",
                    show(d)
                )))
            };
            match self.nodes.get(d.as_str()) {
                Some(Node::File) => {}
                Some(Node::Link) => return refuse("is a symbolic link, not a file"),
                Some(Node::Dir { .. }) => return refuse("is a directory in the archive"),
                None => return refuse("is not in the archive"),
            }
        }
        for s in manifest.storages.as_deref().unwrap_or_default() {
            let refuse = |what: &str| {
                Err(Error::Archive(format!(
                    "storage {} listed in {MANIFEST} {what}",
                    show(s)
                )))
            };
            match self.nodes.get(s.as_str()) {
                Some(Node::Dir { .. }) => {}
                Some(Node::File | Node::Link) => {
                    return refuse("is a file in the archive, not a directory");
                }
                None => return refuse("is not in the archive"),
            }
        }
        Ok(())
    }

    /// Every link lies in a listed storage and resolves, by its own
    /// components, to a path inside that storage.
    pub(super) fn check_links(&self, manifest: &Manifest) -> Result<()> {
        let storages = manifest.storages.as_deref().unwrap_or_default();
        for (name, target) in &self.links {
            let refuse = || {
                Error::Archive(format!(
                    "entry {}: a symbolic link to {} is not allowed (only relative links inside a storage)",
                    show(name),
                    show(target)
                ))
            };
            let storage = storages
                .iter()
                .find(|s| {
                    name.len() > s.len()
                        && name.starts_with(s.as_str())
                        && name.as_bytes()[s.len()] == b'/'
                })
                .ok_or_else(refuse)?;
            let inside = &name[storage.len() + 1..];
            let mut depth = inside.matches('/').count() as i64;
            for part in target.split('/') {
                match part {
                    "" | "." => {}
                    ".." => depth -= 1,
                    _ => depth += 1,
                }
                if depth < 0 {
                    return Err(refuse());
                }
            }
            if depth == 0 {
                return Err(refuse());
            }
        }
        Ok(())
    }

    /// Create the recorded links, once nothing else will be written.
    pub(super) fn make_links(&self) -> Result<()> {
        for (name, target) in &self.links {
            let path = self.root.join(name);
            std::os::unix::fs::symlink(target, &path).ctx("create link", &path)?;
        }
        Ok(())
    }
}

/// `name` is `top` or lies under it.
fn under(name: &str, top: &str) -> bool {
    name == top
        || (name.len() > top.len() && name.starts_with(top) && name.as_bytes()[top.len()] == b'/')
}
