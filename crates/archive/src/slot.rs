//! The three media of a report as one vocabulary: for each [`MediaKind`], its name in the
//! event, manifest and result events, its object's file name and content type. Everything
//! that names a media asks here instead of spelling the words again.

use media::MediaKind;

/// Where and how one kind of media is stored, and what it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub kind: MediaKind,
    /// The name in the manifest and the result event (`source_image`, `target_image`, `video`).
    pub manifest_name: &'static str,
    /// The object's name under the session's prefix.
    pub file_name: &'static str,
    pub content_type: &'static str,
}

/// The three media, in contract order.
pub const SLOTS: [Slot; 3] = [
    Slot {
        kind: MediaKind::Source,
        manifest_name: "source_image",
        file_name: "source.jpg",
        content_type: "image/jpeg",
    },
    Slot {
        kind: MediaKind::Target,
        manifest_name: "target_image",
        file_name: "target.jpg",
        content_type: "image/jpeg",
    },
    Slot {
        kind: MediaKind::Video,
        manifest_name: "video",
        file_name: "video.mp4",
        content_type: "video/mp4",
    },
];

/// The slot of a kind of media.
pub fn slot(kind: MediaKind) -> &'static Slot {
    match kind {
        MediaKind::Source => &SLOTS[0],
        MediaKind::Target => &SLOTS[1],
        MediaKind::Video => &SLOTS[2],
    }
}

/// The media's name in the manifest and the result event.
pub fn manifest_name(kind: MediaKind) -> &'static str {
    slot(kind).manifest_name
}

/// The event's URL for a kind of media, if it has one.
pub fn url_of(face: &crate::event::Face, kind: MediaKind) -> Option<&url::Url> {
    match kind {
        MediaKind::Source => face.source_image.as_ref(),
        MediaKind::Target => face.target_image.as_ref(),
        MediaKind::Video => face.video_url.as_ref(),
    }
}

/// The name of a session's manifest object.
pub const MANIFEST_FILE: &str = "manifest.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_slot() {
        for found in SLOTS {
            assert_eq!(slot(found.kind), &found);
        }
    }
}
