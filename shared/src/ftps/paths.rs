//! Remote paths and ferry's temporary names.
//!
//! A temporary name is hidden and recognisable: `.NAME.TAG.ferry-part`, next to the final
//! name. With a key given (the content's SHA-256 for an upload, a hash of the remote path for
//! a download), TAG comes from it, so a retry of the same transfer (after a crash or a cut
//! connection) writes over the same temporary file instead of leaving the first attempt's
//! part behind; only the holder of the transfer's claim moves it, so no two transfers share
//! the name. Without a key, TAG is random.
//!
//! A download's part is `.NAME.OWNER-p.ferry-part`: OWNER is a hash of the flow and the
//! remote path, so two flows fetching into one folder never touch each other's parts, and a
//! part under that name is a dead attempt of this same transfer (the claim keeps live ones
//! apart), removed before the new one is created. The part is created exclusively and never
//! through a link, so a file planted under the name can block a download but never redirect
//! it; should one reappear in that instant, a random name (`OWNER-RANDOM`) is used.

use sha2::{Digest, Sha256};

use super::control::check_line;
use super::error::{FtpsError, FtpsErrorKind};
use super::listing::check_name;

/// The path of a file to transfer, `dir/name`, and the step that names it (`"{what} of
/// {path}"`). Refuses a name that is not one path component and a directory that cannot
/// travel on one command line.
pub(crate) fn remote_file(
    what: &str,
    dir: &str,
    name: &str,
) -> Result<(String, String), FtpsError> {
    let path = join_remote(dir, name);
    let step = format!("{what} of {path}");
    check_name(name)
        .map_err(|e| FtpsError::new(FtpsErrorKind::InvalidPath, &step, e.to_string()))?;
    check_line(&step, dir)?;
    Ok((path, step))
}

/// Joins a remote directory and a name with exactly one `/`.
pub(crate) fn join_remote(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The temporary name for `name` (see the module docs).
pub(crate) fn temp_name(name: &str, key: Option<&[u8; 32]>) -> String {
    let tag = match key {
        Some(key) => hex::encode(&key[..6]),
        None => uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
    };
    format!(".{}.{tag}.ferry-part", bounded(name))
}

/// Whether `name` is one of ferry's own working files on a partner: an upload's or a
/// download's part (`.….ferry-part`) or a replaced file waiting aside (`.….ferry-old`). A
/// listing that shows hidden entries shows them too; no flow ever takes them as files.
pub fn is_working_file(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.starts_with('.') && (base.ends_with(".ferry-part") || base.ends_with(".ferry-old"))
}

/// Whether `name` is an upload's temporary name ([`temp_name`]): `.NAME.TAG.ferry-part` with
/// a 12-hex-digit TAG. Download parts (`OWNER-p`, `OWNER-RANDOM`) never match.
pub fn is_upload_part(name: &str) -> bool {
    let Some(stem) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".ferry-part"))
    else {
        return false;
    };
    match stem.rsplit_once('.') {
        Some((base, tag)) => {
            !base.is_empty() && tag.len() == 12 && tag.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// The start of every download part name for `name` fetched from `remote_path` by `owner`
/// (a flow id; empty outside a flow): `.NAME.OWNER-`.
pub(crate) fn download_part_prefix(name: &str, owner: &str, remote_path: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(owner.as_bytes());
    hasher.update(b"\0");
    hasher.update(remote_path.as_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    format!(".{}.{}-", bounded(name), hex::encode(&digest[..4]))
}

/// The download part name under `prefix` (see [`download_part_prefix`]).
pub(crate) fn download_part_name(prefix: &str) -> String {
    format!("{prefix}p.ferry-part")
}

/// An unguessable download part name under `prefix`, for when the fixed one is taken.
pub(crate) fn random_download_part_name(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}.ferry-part", &random[..12])
}

/// `name` cut to at most 160 bytes on a character boundary.
fn bounded(name: &str) -> &str {
    let mut cut = name.len().min(160);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    &name[..cut]
}

/// Where a file about to be replaced waits, hidden, until its successor is in place:
/// `DIR/.NAME.RANDOM.ferry-old`.
pub(crate) fn aside_path(path: &str) -> String {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let hidden = temp_name(name, None);
    let hidden = hidden.trim_end_matches(".ferry-part");
    let aside = format!("{hidden}.ferry-old");
    if path.contains('/') {
        format!("{dir}/{aside}")
    } else {
        aside
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftps::check_name;

    #[test]
    fn upload_parts_are_recognised_and_nothing_else_is() {
        assert!(is_upload_part(&temp_name("a.xml", None)));
        assert!(is_upload_part(&temp_name("a.b c.xml", Some(&[7; 32]))));
        let download = download_part_name(&download_part_prefix("a.xml", "f", "/out/a.xml"));
        for other in [
            "a.xml",
            ".a.xml",
            ".ferry-part",
            "..0123456789ab.ferry-part",
            ".a.xml.0123456789zz.ferry-part",
            download.as_str(),
            &aside_path("a.xml"),
        ] {
            assert!(!is_upload_part(other), "{other}");
        }
    }

    #[test]
    fn remote_paths_join_with_one_slash() {
        assert_eq!(join_remote("/in", "a b.xml"), "/in/a b.xml");
        assert_eq!(join_remote("/in/", "a"), "/in/a");
        assert_eq!(join_remote("", "a"), "a");
        assert_eq!(join_remote(".", "a"), "a");
        assert_eq!(join_remote("/", "a"), "/a");
    }

    #[test]
    fn working_files_are_parts_and_asides_and_nothing_else() {
        assert!(is_working_file(".a.csv.0123456789ab.ferry-part"));
        assert!(is_working_file(".a.csv.0123-p.ferry-part"));
        assert!(is_working_file("sub/.a.csv.ferry-old"));
        assert!(!is_working_file("a.ferry-part"));
        assert!(!is_working_file(".hidden.csv"));
        assert!(!is_working_file("a.csv"));
    }

    #[test]
    fn aside_paths_stay_in_the_directory_and_are_hidden() {
        let a = aside_path("/in/a.xml");
        assert!(a.starts_with("/in/.a.xml."), "{a}");
        assert!(a.ends_with(".ferry-old"), "{a}");
        assert!(aside_path("a.xml").starts_with(".a.xml."));
    }

    #[test]
    fn download_parts_are_per_owner() {
        let a = download_part_prefix("r.xml", "flow-a", "/out/r.xml");
        let b = download_part_prefix("r.xml", "flow-b", "/out/r.xml");
        assert_ne!(a, b, "two flows never share a part");
        assert!(a.starts_with(".r.xml."));
        let fixed = download_part_name(&a);
        assert!(
            fixed.starts_with(&a) && fixed.ends_with(".ferry-part"),
            "{fixed}"
        );
        assert_eq!(fixed, download_part_name(&a));
        let random = random_download_part_name(&a);
        assert_ne!(random, random_download_part_name(&a));
        assert!(check_name(&fixed).is_ok() && check_name(&random).is_ok());
    }

    #[test]
    fn temp_names_are_hidden_bounded_and_stable_per_content() {
        let a = temp_name("report.xml", None);
        let b = temp_name("report.xml", None);
        assert_ne!(a, b, "unique without a known content");
        assert!(a.starts_with(".report.xml."));
        assert!(a.ends_with(".ferry-part"));
        assert!(check_name(&a).is_ok());
        let long = "é".repeat(200);
        assert!(temp_name(&long, None).len() < 200);
        let content = [0xab; 32];
        assert_eq!(
            temp_name("report.xml", Some(&content)),
            temp_name("report.xml", Some(&content)),
            "a retry of the same content reuses the same temporary file"
        );
        assert_eq!(
            temp_name("report.xml", Some(&content)),
            ".report.xml.abababababab.ferry-part"
        );
    }
}
