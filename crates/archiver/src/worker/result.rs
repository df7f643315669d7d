//! The result event published to `archiver.results` for every settled event
//! (docs/contract.md section 4): which session, what became of it, where its manifest is, and
//! each media's status.

use std::collections::BTreeMap;

use serde::Serialize;

/// A result event, before its `outcome` is known (that is the settlement's to decide).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ResultEvent {
    /// `None` only for a message so broken that no session id could be read from it.
    pub session_id: Option<String>,
    pub tenant: Option<String>,
    /// `None` when no manifest was written (an event dead-lettered before any fetch).
    pub manifest_key: Option<String>,
    /// Keyed by the manifest's media names: `source_image`, `target_image`, `video`.
    pub media: BTreeMap<String, MediaResult>,
    /// Why the event was dead-lettered; absent for an archived one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One media's status, as in the manifest, without the technical details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaResult {
    pub status: archive::MediaStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Longest session id or tenant copied from a message that failed to parse: such text is
/// untrusted and only there to help an operator find the message.
const MAX_ECHOED_CHARS: usize = 128;

impl ResultEvent {
    /// The result for a message that is not a valid event: whatever session id and tenant
    /// can still be read from it, so that a consumer of results can match it.
    pub fn unparsed(body: &[u8], reason: &str) -> ResultEvent {
        let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            value
                .as_ref()
                .and_then(|value| value.get(name))
                .and_then(|field| field.as_str())
                .map(|text| text.chars().take(MAX_ECHOED_CHARS).collect::<String>())
        };
        ResultEvent {
            session_id: field("session_id"),
            tenant: field("tenant"),
            manifest_key: None,
            media: BTreeMap::new(),
            reason: Some(reason.to_owned()),
        }
    }

    /// The JSON body, with `outcome` (the same word as the routing key).
    pub fn body(&self, outcome: &str) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("outcome".to_owned(), serde_json::Value::from(outcome));
        }
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsed_results_echo_what_can_be_read() {
        let cases: [(&[u8], Option<&str>, Option<&str>); 4] = [
            (b"{not json", None, None),
            (
                br#"{"session_id": "abc", "tenant": "Bad Tenant"}"#,
                Some("abc"),
                Some("Bad Tenant"),
            ),
            (br#"{"session_id": 42}"#, None, None),
            (br#"[1, 2]"#, None, None),
        ];
        for (body, session_id, tenant) in cases {
            let result = ResultEvent::unparsed(body, "why");
            assert_eq!(
                result.session_id.as_deref(),
                session_id,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(result.tenant.as_deref(), tenant);
            let json: serde_json::Value = serde_json::from_slice(&result.body("dead-lettered")).unwrap();
            assert_eq!(json["outcome"], "dead-lettered");
            assert_eq!(json["reason"], "why");
            assert_eq!(json["manifest_key"], serde_json::Value::Null);
        }
    }
}
