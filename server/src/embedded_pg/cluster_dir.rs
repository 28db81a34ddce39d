//! The cluster directory and who owns it: PostgreSQL refuses to run as root, so when atiende
//! does, the cluster belongs to and runs as `postgres` (or `nobody`), found in /etc/passwd.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use super::{EmbeddedPgError, io_err};

/// The unprivileged account the cluster runs as when atiende itself runs as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RunAs {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// Creates the cluster dir (0700) and makes sure the user PostgreSQL will run as owns it and can
/// reach it. Returns that user when it differs from ours, i.e. when we run as root.
pub(super) async fn prepare_cluster_dir(
    data_dir: &Path,
    cluster_dir: &Path,
) -> Result<Option<RunAs>, EmbeddedPgError> {
    match fs::DirBuilder::new().mode(0o700).create(cluster_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io_err(format!(
                "could not create {}",
                cluster_dir.display()
            ))(e));
        }
    }
    let meta = fs::metadata(cluster_dir)
        .map_err(io_err(format!("could not stat {}", cluster_dir.display())))?;
    let euid = effective_uid()?;
    let run_as = if euid == 0 {
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let user = if meta.uid() != 0 {
            // An existing cluster keeps its owner rather than being chowned wholesale.
            lookup_uid(&passwd, meta.uid()).unwrap_or_else(|| RunAs {
                name: format!("uid {}", meta.uid()),
                uid: meta.uid(),
                gid: meta.gid(),
            })
        } else {
            lookup_user(&passwd, "postgres")
                .or_else(|| lookup_user(&passwd, "nobody"))
                .ok_or(EmbeddedPgError::NoUnprivilegedUser)?
        };
        check_traversable(data_dir, &user)?;
        if meta.uid() != user.uid {
            let dir = cluster_dir.to_owned();
            let (uid, gid) = (user.uid, user.gid);
            tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid))
                .await
                .map_err(|e| io_err("chown task failed")(io::Error::other(e)))?
                .map_err(io_err(format!(
                    "could not chown {} to {}",
                    cluster_dir.display(),
                    user.name
                )))?;
        }
        Some(user)
    } else {
        if meta.uid() != euid {
            return Err(EmbeddedPgError::WrongOwner {
                dir: cluster_dir.to_owned(),
                owner: meta.uid(),
                uid: euid,
            });
        }
        None
    };
    // Only the owner may enter: this is what makes trust authentication on the socket safe.
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(cluster_dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("could not chmod {}", cluster_dir.display())))?;
    }
    Ok(run_as)
}

/// The owner of `/proc/self` is our effective uid (std offers no geteuid, and `unsafe` is out).
pub(super) fn effective_uid() -> Result<u32, EmbeddedPgError> {
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(io_err("could not read /proc/self to find our user id"))
}

fn lookup_user(passwd: &str, name: &str) -> Option<RunAs> {
    passwd_entries(passwd).find(|u| u.name == name)
}

fn lookup_uid(passwd: &str, uid: u32) -> Option<RunAs> {
    passwd_entries(passwd).find(|u| u.uid == uid)
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = RunAs> + '_ {
    passwd.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        (!name.is_empty() && !name.starts_with('#')).then(|| RunAs {
            name: name.to_owned(),
            uid,
            gid,
        })
    })
}

/// Checks that `user` may search every directory from `/` down to `dir`. Root-spawned commands
/// drop supplementary groups (std does setgroups(0)), so owner, primary group and other bits decide.
fn check_traversable(dir: &Path, user: &RunAs) -> Result<(), EmbeddedPgError> {
    let mut chain: Vec<&Path> = dir.ancestors().collect();
    chain.reverse();
    for d in chain {
        let meta = fs::metadata(d).map_err(io_err(format!("could not stat {}", d.display())))?;
        let mode = meta.permissions().mode();
        let bit = if meta.uid() == user.uid {
            0o100
        } else if meta.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Err(EmbeddedPgError::NotTraversable {
                dir: d.to_owned(),
                user: user.name.clone(),
                uid: user.uid,
            });
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return std::os::unix::fs::lchown(path, Some(uid), Some(gid));
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::embedded_pg::{EmbeddedPostgres, scratch_dir};

    #[tokio::test]
    async fn untraversable_parent_is_reported() {
        if effective_uid().unwrap() != 0 {
            return; // only root hands the cluster to another user
        }
        let base = scratch_dir("closed");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        let err = EmbeddedPostgres::start(&base.join("data"))
            .await
            .unwrap_err();
        match &err {
            EmbeddedPgError::NotTraversable { dir, .. } => assert_eq!(dir, &base),
            other => panic!("unexpected error: {other}"),
        }
        assert!(err.to_string().contains("chmod o+x"), "{err}");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn passwd_lookups() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n\
                      postgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/bash\nbroken line\n";
        assert_eq!(
            lookup_user(passwd, "postgres"),
            Some(RunAs {
                name: "postgres".into(),
                uid: 101,
                gid: 104
            })
        );
        assert_eq!(lookup_user(passwd, "nobody").map(|u| u.uid), Some(65534));
        assert_eq!(lookup_user(passwd, "missing"), None);
        assert_eq!(
            lookup_uid(passwd, 101).map(|u| u.name),
            Some("postgres".into())
        );
    }
}
