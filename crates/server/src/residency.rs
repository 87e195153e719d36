//! Most of the executable's code and read-only data runs only while the server starts:
//! the CLI, the preprocessor and grammar, module registration and the config's checks.
//! The kernel maps code in 64 KiB runs around each page touched (fault-around), so
//! starting leaves ~9 MiB of the binary resident in every server, of which the message
//! path uses a fraction. Once started, the server unmaps those pages from itself; the
//! ones it still uses come back on their first touch, from the page cache, and the others
//! stay reclaimable by the kernel instead of counting as the server's memory. A reload
//! runs the loader again, so it releases them again when done.

/// Releases the startup pages when dropped (at the end of a reload, on every path).
pub struct ReleaseOnDrop;

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        release_startup_pages();
    }
}

/// Unmaps, from this process only, the pages of its own executable that hold only the
/// file's contents: its code, and read-only data the loader did not write (relocated
/// read-only data, RELRO, holds private copies and is kept). Returns the bytes released.
pub fn release_startup_pages() -> usize {
    let released = release_executable_pages();
    tracing::debug!(released_kb = released / 1024, "startup code unmapped");
    released
}

#[cfg(target_os = "linux")]
fn release_executable_pages() -> usize {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut released = 0;
    for area in mappings(&smaps) {
        let ours = area.path == exe.as_os_str().as_encoded_bytes();
        // Only areas that cannot be written now (so nothing can become private while we
        // look) and hold no private page: dropping those pages loses nothing.
        let read_only = area.perms.starts_with("r-") && area.perms.ends_with('p');
        if !ours || !read_only || area.anonymous_kb != 0 || area.rss_kb == 0 {
            continue;
        }
        // SAFETY: the range is a whole mapping of this process's executable, read-only
        // and without private pages, so MADV_DONTNEED only drops page-table entries; the
        // next access reads the same bytes back from the (unwritable while executed) file.
        let done = unsafe {
            libc::madvise(
                area.start as *mut libc::c_void,
                area.end - area.start,
                libc::MADV_DONTNEED,
            )
        };
        if done == 0 {
            released += area.rss_kb * 1024;
        }
    }
    released
}

#[cfg(not(target_os = "linux"))]
fn release_executable_pages() -> usize {
    0
}

struct Mapping<'a> {
    start: usize,
    end: usize,
    perms: &'a str,
    path: &'a [u8],
    rss_kb: usize,
    anonymous_kb: usize,
}

/// The areas of a `/proc/PID/smaps` text with the fields used here.
fn mappings(smaps: &str) -> Vec<Mapping<'_>> {
    let mut areas: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-').and_then(|(s, e)| {
            Some((
                usize::from_str_radix(s, 16).ok()?,
                usize::from_str_radix(e, 16).ok()?,
            ))
        }) {
            let perms = fields.next().unwrap_or_default();
            // offset, device, inode, then the path (which may hold spaces).
            let path = line
                .splitn(6, |c: char| c.is_ascii_whitespace())
                .nth(5)
                .map(|p| p.trim_start().as_bytes())
                .unwrap_or_default();
            areas.push(Mapping {
                start,
                end,
                perms,
                path,
                rss_kb: 0,
                anonymous_kb: 0,
            });
            continue;
        }
        let value = || {
            fields
                .clone()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if let Some(area) = areas.last_mut() {
            match first {
                "Rss:" => area.rss_kb = value(),
                "Anonymous:" => area.anonymous_kb = value(),
                _ => {}
            }
        }
    }
    areas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_areas_are_read_with_their_path_and_private_pages() {
        let smaps = "\
55d0a0000000-55d0a0400000 r--p 00000000 fe:01 1234 /opt/fer rosip/bin
Size:               4096 kB
Rss:                 812 kB
Anonymous:             0 kB
55d0a0400000-55d0a1000000 r-xp 00400000 fe:01 1234 /opt/fer rosip/bin
Rss:                6948 kB
Anonymous:             0 kB
55d0a1000000-55d0a1010000 r--p 01000000 fe:01 1234 /opt/fer rosip/bin
Rss:                  64 kB
Anonymous:            64 kB
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
Rss:                   4 kB
Anonymous:             4 kB
";
        let areas = mappings(smaps);
        assert_eq!(areas.len(), 4);
        assert_eq!(areas[1].start, 0x55d0a0400000);
        assert_eq!(areas[1].end, 0x55d0a1000000);
        assert_eq!(areas[1].perms, "r-xp");
        assert_eq!(areas[1].path, b"/opt/fer rosip/bin");
        assert_eq!(areas[1].rss_kb, 6948);
        assert_eq!(areas[2].anonymous_kb, 64);
        assert_eq!(areas[3].path, b"");
    }

    #[test]
    fn released_code_runs_again() {
        // The test binary drops its own code and read-only data, then keeps running
        // (formatting and hashing touch both again).
        assert!(
            release_startup_pages() > 0,
            "no page of the test binary released"
        );
        let text = format!("{:?}", std::collections::HashMap::from([(1, "one")]));
        assert_eq!(text, r#"{1: "one"}"#);
    }
}
