//! Finding the process's memory cgroup: `/proc/self/cgroup` read against
//! `/proc/self/mountinfo`, correct inside cgroup and mount namespaces.
//!
//! `/proc/self/cgroup` gives the cgroup's path *relative to the root of the
//! hierarchy as the process's cgroup namespace sees it*. `mountinfo` gives, for each
//! mount of the hierarchy, the path inside the hierarchy that is mounted (`root`) and
//! where (`mount point`). The directory is `mount point + (path - root)`. Concatenating
//! the path onto `/sys/fs/cgroup/memory` instead, as many libraries do, breaks in
//! every container whose mount root is not `/` (Docker with the host's cgroup
//! namespace shows `/docker/<id>` in both files, mounted at `/sys/fs/cgroup/memory`).

use std::fs;
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use super::{CgroupInfo, CgroupVersion, DiscoveryError};

/// Finds the memory cgroup: v1's memory controller if it is mounted (this includes
/// hybrid hosts, whose v2 hierarchy carries no memory controller), else v2.
pub(crate) fn discover(proc_root: &Path, mount_root: &Path) -> Result<CgroupInfo, DiscoveryError> {
    let cgroup = fs::read(proc_root.join("self/cgroup")).map_err(|e| DiscoveryError::Read {
        file: "/proc/self/cgroup",
        kind: e.kind(),
    })?;
    let mountinfo =
        fs::read(proc_root.join("self/mountinfo")).map_err(|e| DiscoveryError::Read {
            file: "/proc/self/mountinfo",
            kind: e.kind(),
        })?;
    let cgroup = String::from_utf8_lossy(&cgroup);
    let mountinfo = String::from_utf8_lossy(&mountinfo);

    let (v1_path, v2_path) = membership(&cgroup)?;
    let mounts = parse_mountinfo(&mountinfo);

    if let Some(path) = v1_path {
        let candidates: Vec<&Mount> = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup" && m.superopts.split(',').any(|o| o == "memory"))
            .collect();
        if let Some(info) = locate(CgroupVersion::V1, path, &candidates, mount_root) {
            return Ok(info);
        }
    }
    if let Some(path) = v2_path {
        let candidates: Vec<&Mount> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
        if let Some(info) = locate(CgroupVersion::V2, path, &candidates, mount_root) {
            if info.dir.join("memory.current").exists() {
                return Ok(info);
            }
            return Err(DiscoveryError::NoMemoryController);
        }
    }
    match (v1_path, v2_path) {
        (None, None) => Err(DiscoveryError::NoMemoryController),
        (Some(_), _) => Err(DiscoveryError::NotMounted {
            version: CgroupVersion::V1,
        }),
        (None, Some(_)) => Err(DiscoveryError::NotMounted {
            version: CgroupVersion::V2,
        }),
    }
}

/// The v1 memory controller's path and the v2 path from `/proc/self/cgroup`
/// (`hierarchy-id:controllers:path` lines). Malformed lines are skipped.
fn membership(text: &str) -> Result<(Option<&str>, Option<&str>), DiscoveryError> {
    let mut v1 = None;
    let mut v2 = None;
    let mut parsed = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !path.starts_with('/') || id.parse::<u32>().is_err() {
            continue;
        }
        parsed += 1;
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        }
    }
    if parsed == 0 && !text.trim().is_empty() {
        return Err(DiscoveryError::Malformed {
            file: "/proc/self/cgroup",
        });
    }
    Ok((v1, v2))
}

#[derive(Debug)]
struct Mount {
    root: String,
    mount_point: String,
    fstype: String,
    superopts: String,
}

/// The mounts of `mountinfo`; lines that do not parse are skipped.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            // id parent major:minor root mount-point options [optional...] - fstype source superopts
            let separator = fields.iter().skip(6).position(|&f| f == "-")? + 6;
            if fields.len() < separator + 4 {
                return None;
            }
            Some(Mount {
                root: unescape(fields[3]),
                mount_point: unescape(fields[4]),
                fstype: fields[separator + 1].into(),
                superopts: fields[separator + 3].into(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with `root` removed, component-wise; `None` if `root` is not an ancestor.
fn relative<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    if root == "/" {
        return Some(path.trim_start_matches('/'));
    }
    let rest = path.strip_prefix(root.trim_end_matches('/'))?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// The directory of `path` among the mounts of one hierarchy: the mount whose root is
/// the longest ancestor of `path`. If none is (the process sits outside what its
/// namespace mounted, or its path climbs with `..`), the first mount's own directory,
/// marked inexact: the closest visible ancestor.
fn locate(
    version: CgroupVersion,
    path: &str,
    mounts: &[&Mount],
    mount_root: &Path,
) -> Option<CgroupInfo> {
    let under_root = |p: &str| mount_root.join(p.trim_start_matches('/'));
    let climbs = path.split('/').any(|c| c == "..");
    let best = mounts
        .iter()
        .filter_map(|m| Some((m, relative(path, &m.root)?)))
        .filter(|_| !climbs)
        .max_by_key(|(m, _)| m.root.len());
    let (mount, rel, exact) = match best {
        Some((m, rel)) => (*m, rel, true),
        None => (*mounts.first()?, "", false),
    };
    let mount_dir = under_root(&mount.mount_point);
    let mut dir = mount_dir.join(rel);
    let mut exact = exact;
    if !dir.is_dir() {
        // Listed but not there (a stale mount, a moved process): the mount's own
        // directory is the closest ancestor that exists.
        dir.clone_from(&mount_dir);
        exact = false;
    }
    Some(CgroupInfo {
        version,
        path: path.into(),
        dir,
        mount_dir,
        exact,
    })
}

/// The cgroup directories from `dir` up to and including `mount_dir`.
pub(crate) fn ancestors(dir: &Path, mount_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut current = Some(dir);
    while let Some(d) = current {
        out.push(d.to_path_buf());
        if d == mount_dir || !d.starts_with(mount_dir) {
            break;
        }
        current = d.parent();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_reads_v1_and_v2_lines() {
        let text = "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n";
        assert_eq!(
            membership(text).unwrap(),
            (Some("/process_api/abc"), Some("/"))
        );
        let joined = "5:cpu,memory:/a\n";
        assert_eq!(membership(joined).unwrap(), (Some("/a"), None));
        assert_eq!(membership("0::/x/y\n").unwrap(), (None, Some("/x/y")));
        assert!(matches!(
            membership("garbage without colons\n"),
            Err(DiscoveryError::Malformed { .. })
        ));
        assert_eq!(membership("").unwrap(), (None, None));
    }

    #[test]
    fn mountinfo_lines_with_optional_fields_and_escapes() {
        let text = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime shared:9 master:2 - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n\
                    broken line\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].root, "/docker/abc");
        assert_eq!(mounts[0].mount_point, "/sys/fs/cgroup/memory");
        assert_eq!(mounts[0].fstype, "cgroup");
        assert_eq!(mounts[0].superopts, "rw,memory");
        assert_eq!(mounts[1].mount_point, "/sys/fs/my cgroup");
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn relative_paths_are_component_wise() {
        assert_eq!(relative("/docker/abc", "/docker/abc"), Some(""));
        assert_eq!(relative("/docker/abc/sub", "/docker/abc"), Some("sub"));
        assert_eq!(relative("/docker/abcd", "/docker/abc"), None);
        assert_eq!(relative("/a/b", "/"), Some("a/b"));
        assert_eq!(relative("/", "/"), Some(""));
    }

    #[test]
    fn ancestors_stop_at_the_mount() {
        let up = ancestors(Path::new("/m/a/b"), Path::new("/m"));
        assert_eq!(
            up,
            [Path::new("/m/a/b"), Path::new("/m/a"), Path::new("/m")]
        );
        assert_eq!(
            ancestors(Path::new("/m"), Path::new("/m")),
            [Path::new("/m")]
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_discovery_files_never_panic(cgroup in ".{0,200}", mountinfo in ".{0,300}") {
            let _ = membership(&cgroup);
            let mounts = parse_mountinfo(&mountinfo);
            let refs: Vec<&Mount> = mounts.iter().collect();
            let _ = locate(CgroupVersion::V2, &cgroup, &refs, Path::new("/nonexistent"));
        }
    }
}
