//! `archiver get KEY -o FILE` writes decrypted biometrics (issue 13). Regression: FILE was
//! created with mode 0644 and a symbolic link at FILE was followed. Now FILE is written
//! with mode 0600 through a temporary file renamed into place; a link at FILE is refused
//! (exit 2, one line on stderr, its target untouched); a file that was there is replaced
//! in one step, or left as it was when the download fails.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::archive_kit::{
    archive_event, event_json, new_session_id, printed, serve_good_media, tenant_prefix, TestMedia, Urls,
};
use crate::support::{archiver, run_with_timeout, unique_name, MediaServer, Stack};

fn get_to(key: &str, file: &Path) -> Output {
    let mut command = archiver();
    command
        .args(["get", key, "--reason", "integration test", "-o"])
        .arg(file);
    run_with_timeout(command, None, Duration::from_secs(60))
}

/// The names in a folder, sorted: shows any temporary file left behind.
fn names_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn get_output_is_private_atomic_and_never_follows_a_link() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("get-output");
    let session = new_session_id().to_ascii_lowercase();
    let archived = archive_event(&server, &event_json(&session, &tenant, None, &Urls::of(&server)), &[]);
    assert_eq!(archived.status.code(), Some(0), "{}", printed(&archived));
    let object = format!("{}{session}/source.jpg", tenant_prefix(&tenant));
    let source = TestMedia::get().source.to_vec();
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();

    // A new file: the object's bytes, mode 0600, nothing else left in the folder.
    let fresh = dir.join("fresh.jpg");
    let output = get_to(&object, &fresh);
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert!(std::fs::read(&fresh).unwrap() == source, "decrypted bytes differ");
    assert_eq!(mode(&fresh), 0o600, "decrypted media must be private");
    assert_eq!(names_in(dir), ["fresh.jpg"]);

    // An existing file (0644, held open): replaced by a new file in one rename. The open
    // handle still reads the old content, so the old file was never truncated or written.
    let existing = dir.join("existing.jpg");
    std::fs::write(&existing, b"previous content").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    let held = std::fs::File::open(&existing).unwrap();
    let old_inode = held.metadata().unwrap().ino();
    let output = get_to(&object, &existing);
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert!(std::fs::read(&existing).unwrap() == source, "the file was not replaced");
    assert_eq!(mode(&existing), 0o600);
    assert_ne!(
        std::fs::metadata(&existing).unwrap().ino(),
        old_inode,
        "written in place, not renamed"
    );
    let mut before = String::new();
    std::io::Read::read_to_string(&mut &held, &mut before).unwrap();
    assert_eq!(before, "previous content", "the old file was written to");
    assert_eq!(names_in(dir), ["existing.jpg", "fresh.jpg"]);

    // A failed download (no such object) leaves an existing file as it was and creates
    // nothing; only the temporary file is removed.
    let kept = dir.join("kept.jpg");
    std::fs::write(&kept, b"keep me").unwrap();
    let missing = format!("{}{session}/no-such.jpg", tenant_prefix(&tenant));
    for file in [&kept, &dir.join("never.jpg")] {
        let output = get_to(&missing, file);
        assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    }
    assert_eq!(std::fs::read(&kept).unwrap(), b"keep me");
    assert_eq!(names_in(dir), ["existing.jpg", "fresh.jpg", "kept.jpg"]);

    // A symbolic link at FILE, to an existing file and to none: refused with exit 2 and
    // one line; the link, its target and the folder are left exactly as they were.
    let links = tempfile::tempdir().unwrap();
    let target = links.path().join("target.txt");
    std::fs::write(&target, b"not yours").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let to_file = links.path().join("to-file.jpg");
    let to_nothing = links.path().join("to-nothing.jpg");
    let nothing = links.path().join("created-through-link.jpg");
    std::os::unix::fs::symlink(&target, &to_file).unwrap();
    std::os::unix::fs::symlink(&nothing, &to_nothing).unwrap();
    for link in [&to_file, &to_nothing] {
        let output = get_to(&object, link);
        let shown = printed(&output);
        assert_eq!(output.status.code(), Some(2), "{shown}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line expected: {shown}");
        assert!(stderr.contains("is a symbolic link"), "{shown}");
        assert!(
            std::fs::symlink_metadata(link).unwrap().file_type().is_symlink(),
            "{shown}"
        );
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"not yours");
    assert_eq!(mode(&target), 0o644);
    assert!(!nothing.exists(), "a file was created through the link");
    assert_eq!(names_in(links.path()), ["target.txt", "to-file.jpg", "to-nothing.jpg"]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(Stack::load().s3().delete_prefix(&tenant_prefix(&tenant)));
}
