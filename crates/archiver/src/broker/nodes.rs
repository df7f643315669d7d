//! `ARCHIVER_AMQP_URL` as a list of nodes (docs/contract.md section 7): a comma-separated
//! list names the nodes of a cluster, tried in turn on every (re)connect, so that losing
//! one node costs a reconnect, not an outage.
//!
//! Each role (consumer, publisher, refetch, ...) remembers the node it last connected to;
//! its next connect, which follows that connection's loss, starts with the node after it.
//! A role's first connect starts with the first node: the order is the operator's
//! preference. Node URLs carry credentials: they are never logged, only their position.

use std::collections::HashMap;
use std::sync::Mutex;

/// The nodes of a broker URL setting, in the order given (blank entries dropped).
pub fn nodes(amqp_url: &str) -> Vec<&str> {
    amqp_url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect()
}

/// The order in which `role` tries `count` nodes now: starting after the node it last
/// connected to, else with the first.
pub fn order(role: &str, count: usize) -> Vec<usize> {
    if count == 0 {
        return Vec::new();
    }
    let start = match last_connected().lock() {
        Ok(last) => last.get(role).map_or(0, |index| (index + 1) % count),
        Err(_) => 0,
    };
    (0..count).map(|offset| (start + offset) % count).collect()
}

/// Records that `role` is connected to node `index`.
pub fn connected(role: &str, index: usize) {
    if let Ok(mut last) = last_connected().lock() {
        last.insert(role.to_string(), index);
    }
}

fn last_connected() -> &'static Mutex<HashMap<String, usize>> {
    static LAST: std::sync::OnceLock<Mutex<HashMap<String, usize>>> = std::sync::OnceLock::new();
    LAST.get_or_init(Default::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_names_the_nodes_in_order() {
        assert_eq!(nodes("amqp://a:5672/%2f"), ["amqp://a:5672/%2f"]);
        assert_eq!(
            nodes("amqp://a/%2f, amqp://b/%2f,,amqp://c/%2f "),
            ["amqp://a/%2f", "amqp://b/%2f", "amqp://c/%2f"]
        );
    }

    #[test]
    fn a_reconnect_starts_after_the_node_last_connected() {
        let role = "test-rotation";
        assert_eq!(order(role, 3), [0, 1, 2], "first connect: the operator's order");
        connected(role, 1);
        assert_eq!(order(role, 3), [2, 0, 1], "after losing node 1: node 2 first");
        connected(role, 2);
        assert_eq!(order(role, 3), [0, 1, 2]);
        assert_eq!(order("other-role", 1), [0]);
        assert!(order(role, 0).is_empty());
    }
}
