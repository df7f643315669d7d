//! Helpers for the archive pipeline tests: real media made with ffmpeg (cached per target
//! directory), report events pointing at a test media server, and `archiver archive` runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::Digest as _;

use super::cli::{archiver, run_with_timeout, ArchiverEnv};
use super::media_server::MediaServer;

/// Media that meet (or, for `small_target`, break) CONTRACT.md section 2.
pub struct TestMedia {
    /// 600x800 JPEG.
    pub source: Bytes,
    /// 1280x720 JPEG.
    pub target: Bytes,
    /// 640x480 JPEG: below the 720 minimum.
    pub small_target: Bytes,
    /// 3 s MP4, about 125 KB.
    pub video: Bytes,
    /// 1.2 s MP4 of noise, about 11 MB: three 5 MiB parts, so a multipart upload.
    pub large_video: Bytes,
}

impl TestMedia {
    /// Made once per target directory with ffmpeg and reused by later runs.
    pub fn get() -> &'static TestMedia {
        static MEDIA: OnceLock<TestMedia> = OnceLock::new();
        MEDIA.get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("archive-test-media");
            std::fs::create_dir_all(&dir).expect("create the test media directory");
            let image = |name: &str, size: &str| {
                make(
                    &dir,
                    name,
                    &["-f", "lavfi", "-i", &format!("testsrc=size={size}"), "-frames:v", "1"],
                )
            };
            let video = |name: &str, input: &str, secs: &str, quality: &[&str]| {
                let mut args = vec![
                    "-f", "lavfi", "-i", input, "-t", secs, "-c:v", "mpeg4", "-pix_fmt", "yuv420p",
                ];
                args.extend_from_slice(quality);
                make(&dir, name, &args)
            };
            TestMedia {
                source: image("source.jpg", "600x800"),
                target: image("target.jpg", "1280x720"),
                small_target: image("small-target.jpg", "640x480"),
                video: video("video.mp4", "testsrc=size=320x240:rate=25", "3", &[]),
                large_video: video(
                    "large-video.mp4",
                    "nullsrc=s=640x480:r=25,geq=random(1)*255:128:128",
                    "1.2",
                    &["-q:v", "2"],
                ),
            }
        })
    }
}

/// Runs ffmpeg once for `name` (into a temporary name, then renamed, so that concurrent
/// test processes never read a half-written file) and returns the bytes.
fn make(dir: &Path, name: &str, args: &[&str]) -> Bytes {
    let path = dir.join(name);
    if !path.exists() {
        let temp: PathBuf = dir.join(format!(".{}-{name}", std::process::id()));
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args)
            .arg(&temp)
            .status()
            .unwrap_or_else(|err| panic!("cannot run ffmpeg to make {name} (apt-get install ffmpeg): {err}"));
        assert!(status.success(), "ffmpeg failed to make {name}");
        std::fs::rename(&temp, &path).expect("publish a test media file");
    }
    Bytes::from(std::fs::read(&path).expect("read a test media file"))
}

/// A fresh session id in upper case (the archiver must store it lower-case).
pub fn new_session_id() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) as u128;
    let mixed = nanos ^ (count << 100) ^ ((std::process::id() as u128) << 64);
    let hex = format!("{mixed:032X}");
    format!(
        "{}-{}-4{}-A{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The three URLs of an event (`None` is JSON `null`).
pub struct Urls {
    pub source: Option<String>,
    pub target: Option<String>,
    pub video: Option<String>,
}

impl Urls {
    /// The usual three routes of `server`.
    pub fn of(server: &MediaServer) -> Urls {
        Urls {
            source: Some(server.url("/source.jpg")),
            target: Some(server.url("/target.jpg")),
            video: Some(server.url("/video.mp4")),
        }
    }
}

/// A report event as the vendor sends it.
pub fn event_json(session_id: &str, tenant: &str, issued_at: Option<&str>, urls: &Urls) -> Vec<u8> {
    let mut event = serde_json::json!({
        "session_id": session_id,
        "tenant": tenant,
        "face": {
            "status": "In Review",
            "face_match_status": "Approved",
            "liveness_status": "In Review",
            "face_match_similarity": 95.43,
            "liveness_confidence": 65.0,
            "source_image": urls.source,
            "target_image": urls.target,
            "video_url": urls.video,
            "vendor_extra": {"ignored": true}
        }
    });
    if let Some(issued_at) = issued_at {
        event["issued_at"] = serde_json::json!(issued_at);
    }
    serde_json::to_vec(&event).expect("encode event")
}

/// Serves the three usual routes with good media.
pub fn serve_good_media(server: &MediaServer) {
    let media = TestMedia::get();
    server.route("/source.jpg", super::Behaviour::Ok(media.source.clone()));
    server.route("/target.jpg", super::Behaviour::Ok(media.target.clone()));
    server.route("/video.mp4", super::Behaviour::Ok(media.video.clone()));
}

/// Runs `archiver archive -` with `event` on stdin, trusting and allowing `server`, with
/// short fetch deadlines so fault cases end quickly, plus `env`.
pub fn archive_event(server: &MediaServer, event: &[u8], env: &[(&str, &str)]) -> Output {
    let mut command = archiver();
    command
        .arg("archive")
        .arg("-")
        .media_server(server)
        .env("ARCHIVER_FETCH_TIMEOUT_SECS", "3")
        .env("ARCHIVER_FETCH_ATTEMPTS", "2")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    for (name, value) in env {
        command.env(name, value);
    }
    run_with_timeout(command, Some(event), Duration::from_secs(90))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 checksum S3 reports for an object the archiver wrote (base64): of the
/// whole object when it took one PUT (below one 5 MiB part), else the composite of its
/// parts' checksums with `-N`. Computed here independently of the archiver's code.
pub fn s3_sha256_checksum(bytes: &[u8]) -> String {
    use base64::Engine as _;
    const PART: usize = 5 * 1024 * 1024;
    let b64 = |digest: &[u8]| base64::engine::general_purpose::STANDARD.encode(digest);
    if bytes.len() < PART {
        return b64(&sha2::Sha256::digest(bytes));
    }
    let parts: Vec<&[u8]> = bytes.chunks(PART).collect();
    let digests: Vec<u8> = parts
        .iter()
        .flat_map(|part| sha2::Sha256::digest(part).to_vec())
        .collect();
    format!("{}-{}", b64(&sha2::Sha256::digest(&digests)), parts.len())
}

/// The key prefix of a tenant (the stack uses the default `face-reports/` prefix).
pub fn tenant_prefix(tenant: &str) -> String {
    format!("face-reports/{tenant}/")
}

/// Stdout and stderr as text, for assertion messages.
pub fn printed(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
