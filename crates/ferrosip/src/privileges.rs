//! The process side of running as a service: dropping root for `user=`/`group=` (`-u`/`-g`)
//! once the sockets are bound, the pid file (`-P`), and systemd's readiness protocol
//! (sd_notify(3): `READY=1` once the server takes traffic, `STOPPING=1` when it stops).

use std::ffi::{CStr, CString};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// Whom to become after binding: a user (its primary group unless `group` is given), a
/// group, or both. Names or numbers, as Kamailio takes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunAs {
    pub user: Option<String>,
    pub group: Option<String>,
}

/// Resolved ids: what `drop_to` switches to.
#[derive(Debug, PartialEq, Eq)]
pub struct Ids {
    /// The user and its name (for its supplementary groups), when a user was given.
    pub user: Option<(libc::uid_t, Option<CString>)>,
    pub gid: libc::gid_t,
}

impl RunAs {
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.group.is_none()
    }

    /// Looks the names up (before anything is bound, so a typo stops the start).
    pub fn resolve(&self) -> Result<Option<Ids>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let user = match &self.user {
            Some(u) => Some(lookup_user(u)?),
            None => None,
        };
        let gid = match (&self.group, &user) {
            (Some(g), _) => lookup_group(g)?,
            (None, Some((_, gid, _))) => *gid,
            (None, None) => unreachable!("is_empty checked"),
        };
        Ok(Some(Ids {
            user: user.map(|(uid, _, name)| (uid, name)),
            gid,
        }))
    }
}

/// A user by name or number: its uid, primary gid and name (none for a number not in the
/// password database).
fn lookup_user(user: &str) -> Result<(libc::uid_t, libc::gid_t, Option<CString>), String> {
    let name = CString::new(user).map_err(|_| format!("user '{user}': not a name"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwnam_r/getpwuid_r write only into `pwd`, `buf` and `found`, which we own
    // and size; the strings read from `pwd` point into `buf`, alive here.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = match user.parse::<libc::uid_t>() {
            Ok(uid) => libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            ),
            Err(_) => libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            ),
        };
        if rc == 0 && !found.is_null() {
            let name = CStr::from_ptr(pwd.pw_name).to_owned();
            return Ok((pwd.pw_uid, pwd.pw_gid, Some(name)));
        }
        match user.parse::<libc::uid_t>() {
            // A bare number is taken as it is (a container's arbitrary uid); its group is
            // the same number unless -g says otherwise.
            Ok(uid) => Ok((uid, uid, None)),
            Err(_) => Err(format!("user '{user}' does not exist")),
        }
    }
}

fn lookup_group(group: &str) -> Result<libc::gid_t, String> {
    if let Ok(gid) = group.parse::<libc::gid_t>() {
        return Ok(gid);
    }
    let name = CString::new(group).map_err(|_| format!("group '{group}': not a name"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in lookup_user.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        );
        if rc == 0 && !found.is_null() {
            return Ok(grp.gr_gid);
        }
    }
    Err(format!("group '{group}' does not exist"))
}

/// Becomes `ids`: supplementary groups (the user's, or only the group), then the group,
/// then the user, in the order that keeps the right to do the next step. glibc applies
/// each call to every thread of the process, so threads started before (the async
/// runtime, the UDP workers) run as the new user too.
pub fn drop_to(ids: &Ids) -> Result<(), String> {
    let os_err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain system calls on values we own.
    unsafe {
        let already = libc::geteuid() != 0
            && ids
                .user
                .as_ref()
                .is_none_or(|(uid, _)| *uid == libc::geteuid())
            && ids.gid == libc::getegid();
        if already {
            return Ok(());
        }
        match &ids.user {
            Some((_, Some(name))) => {
                if libc::initgroups(name.as_ptr(), ids.gid) != 0 {
                    return Err(os_err("initgroups"));
                }
            }
            _ => {
                if libc::setgroups(1, &ids.gid) != 0 {
                    return Err(os_err("setgroups"));
                }
            }
        }
        if libc::setgid(ids.gid) != 0 {
            return Err(os_err(&format!("setgid({})", ids.gid)));
        }
        if let Some((uid, _)) = &ids.user {
            if libc::setuid(*uid) != 0 {
                return Err(os_err(&format!("setuid({uid})")));
            }
            // Root must not be reachable again (setuid from root sets all three ids).
            if *uid != 0 && libc::setuid(0) == 0 {
                return Err("could regain root after setuid".into());
            }
        }
    }
    Ok(())
}

/// The pid file `-P` names, removed when the server stops (when it still can be: after
/// dropping root, a directory only root writes keeps it, as Kamailio's does).
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn write(path: &Path) -> Result<PidFile, String> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write the pid file {}: {e}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Tells the service manager `state` (`READY=1`, `STOPPING=1`) when it asked to be told
/// (`NOTIFY_SOCKET`, a path or an abstract `@name`); nothing otherwise. Errors are logged,
/// never fatal: the server works without its manager hearing of it.
pub fn sd_notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
        if let Some(name) = bytes.strip_prefix(b"@") {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)?;
                return Ok(());
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = name;
                return Err(std::io::Error::other("abstract sockets are Linux only"));
            }
        }
        socket.send_to(state.as_bytes(), Path::new(&target))?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(socket = ?target, "sd_notify {state}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_resolve() {
        let root = RunAs {
            user: Some("root".into()),
            group: None,
        };
        let ids = root.resolve().unwrap().unwrap();
        assert_eq!(ids.gid, 0);
        assert_eq!(ids.user.as_ref().map(|u| u.0), Some(0));
        let numeric = RunAs {
            user: Some("4242".into()),
            group: Some("4243".into()),
        };
        let ids = numeric.resolve().unwrap().unwrap();
        assert_eq!((ids.user.unwrap().0, ids.gid), (4242, 4243));
        let missing = RunAs {
            user: Some("no-such-user-ferrosip".into()),
            group: None,
        };
        assert!(missing.resolve().unwrap_err().contains("does not exist"));
        assert_eq!(RunAs::default().resolve().unwrap(), None);
    }
}
