//! Which agent of a replica set does a backup (PBM's `pbm/prio/priority.go` and
//! `nominateRS`): candidates are scored, grouped by equal score, and the groups are
//! offered in descending order until one agent acknowledges.

use super::ControlError;
use crate::node::Node;
use bson::doc;
use futures::TryStreamExt;
use rbm_protocol::defs::{node_state, AGENTS_COLLECTION, DB, MAX_REPLICATION_LAG_SEC};
use rbm_protocol::meta::agent::AgentStat;
use std::collections::BTreeMap;

/// Implicit priorities when `backup.priority` is not configured.
pub const PRIMARY_PRIO: f64 = 0.5;
pub const SECONDARY_PRIO: f64 = 1.0;
pub const HIDDEN_PRIO: f64 = 2.0;
/// Explicit map: nodes it does not name get this.
pub const DEFAULT_EXPLICIT_PRIO: f64 = 1.0;

/// PBM's `ListSteadyAgents` filter: a primary or secondary, not an arbiter, not
/// delayed, not lagging, healthy, and alive by cluster time.
pub fn is_steady(a: &AgentStat, cluster_time: bson::Timestamp) -> bool {
    (a.state == node_state::PRIMARY || a.state == node_state::SECONDARY)
        && !a.arbiter
        && a.delay_secs == 0
        && a.repl_lag < MAX_REPLICATION_LAG_SEC as i32
        && a.ok()
        && !a.is_stale(cluster_time)
}

/// The agents of this node's replica set that may take a backup or slice now (PBM's
/// `ListSteadyAgents`).
pub async fn steady_agents(node: &Node) -> Result<Vec<AgentStat>, ControlError> {
    let now = node.cluster_time().await?;
    let agents: Vec<AgentStat> = node
        .pbm
        .database(DB)
        .collection::<AgentStat>(AGENTS_COLLECTION)
        .find(doc! {"rs": &node.info.replset})
        .await
        .map_err(ControlError::db("read admin.pbmAgents"))?
        .try_collect()
        .await
        .map_err(ControlError::db("read admin.pbmAgents"))?;
    Ok(agents.into_iter().filter(|a| is_steady(a, now)).collect())
}

/// PBM's `srcHostMultiplier`: the node that took the source of an incremental backup
/// keeps WiredTiger's block history, so it is preferred for the next increment.
pub const SRC_HOST_MULTIPLIER: f64 = 3.0;

/// The score of one candidate.
pub fn score(a: &AgentStat, priority: &BTreeMap<String, f64>) -> f64 {
    score_with(a, priority, &BTreeMap::new())
}

/// PBM's `CalcPriorityForAgent`: the configured priorities, else `rules` (node →
/// coefficient of the default score), else the topology's.
pub fn score_with(
    a: &AgentStat,
    priority: &BTreeMap<String, f64>,
    rules: &BTreeMap<String, f64>,
) -> f64 {
    if !priority.is_empty() {
        return priority
            .get(&a.node)
            .copied()
            .unwrap_or(DEFAULT_EXPLICIT_PRIO);
    }
    if let Some(c) = rules.get(&a.node) {
        return SECONDARY_PRIO * c;
    }
    if a.hidden {
        HIDDEN_PRIO
    } else if a.is_primary() {
        PRIMARY_PRIO
    } else {
        SECONDARY_PRIO
    }
}

/// Candidates of one replica set grouped by equal score, best group first; names within
/// a group are sorted so every reader sees the same order.
pub fn groups(agents: &[AgentStat], priority: &BTreeMap<String, f64>) -> Vec<Vec<String>> {
    groups_with(agents, priority, &BTreeMap::new())
}

/// [`groups`] with coefficient rules (see [`score_with`]).
pub fn groups_with(
    agents: &[AgentStat],
    priority: &BTreeMap<String, f64>,
    rules: &BTreeMap<String, f64>,
) -> Vec<Vec<String>> {
    let mut scored: Vec<(f64, &str)> = agents
        .iter()
        .map(|a| (score_with(a, priority, rules), a.node.as_str()))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut out: Vec<(f64, Vec<String>)> = Vec::new();
    for (s, n) in scored {
        match out.last_mut() {
            Some((ls, g)) if *ls == s => g.push(n.to_string()),
            _ => out.push((s, vec![n.to_string()])),
        }
    }
    out.into_iter().map(|(_, g)| g).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbm_protocol::meta::agent::SubsysStatus;

    fn agent(n: &str, state: i32, hidden: bool) -> AgentStat {
        let ok = SubsysStatus {
            ok: true,
            err: String::new(),
        };
        AgentStat {
            id: None,
            node: n.into(),
            rs: "rs0".into(),
            state,
            state_str: String::new(),
            hidden,
            passive: false,
            arbiter: false,
            delay_secs: 0,
            repl_lag: 0,
            agent_ver: String::new(),
            mongo_ver: String::new(),
            percona_ver: String::new(),
            pbm_status: ok.clone(),
            node_status: ok.clone(),
            storage_status: ok,
            hb: bson::Timestamp {
                time: 100,
                increment: 0,
            },
            err: String::new(),
        }
    }

    #[test]
    fn implicit_hidden_then_secondaries_then_primary() {
        let agents = vec![
            agent("p:1", node_state::PRIMARY, false),
            agent("s2:1", node_state::SECONDARY, false),
            agent("h:1", node_state::SECONDARY, true),
            agent("s1:1", node_state::SECONDARY, false),
        ];
        assert_eq!(
            groups(&agents, &BTreeMap::new()),
            vec![
                vec!["h:1".to_string()],
                vec!["s1:1".into(), "s2:1".into()],
                vec!["p:1".into()]
            ]
        );
    }

    #[test]
    fn explicit_map_overrides_roles_and_defaults_to_one() {
        let agents = vec![
            agent("p:1", node_state::PRIMARY, false),
            agent("s:1", node_state::SECONDARY, false),
            agent("h:1", node_state::SECONDARY, true),
        ];
        let prio = BTreeMap::from([("p:1".to_string(), 3.0), ("h:1".to_string(), 0.5)]);
        assert_eq!(
            groups(&agents, &prio),
            vec![
                vec!["p:1".to_string()],
                vec!["s:1".into()],
                vec!["h:1".into()]
            ]
        );
    }

    #[test]
    fn the_source_node_of_an_increment_goes_first_unless_priorities_are_set() {
        let agents = vec![
            agent("p:1", node_state::PRIMARY, false),
            agent("s:1", node_state::SECONDARY, false),
            agent("h:1", node_state::SECONDARY, true),
        ];
        let rules = BTreeMap::from([("p:1".to_string(), SRC_HOST_MULTIPLIER)]);
        assert_eq!(
            groups_with(&agents, &BTreeMap::new(), &rules),
            vec![
                vec!["p:1".to_string()],
                vec!["h:1".into()],
                vec!["s:1".into()]
            ]
        );
        let prio = BTreeMap::from([("s:1".to_string(), 5.0)]);
        assert_eq!(
            groups_with(&agents, &prio, &rules)[0],
            vec!["s:1".to_string()]
        );
    }

    #[test]
    fn steady_excludes_arbiters_delayed_lagging_sick_and_stale() {
        let now = bson::Timestamp {
            time: 120,
            increment: 0,
        };
        assert!(is_steady(&agent("s:1", node_state::SECONDARY, false), now));
        let mut a = agent("a:1", node_state::ARBITER, false);
        a.arbiter = true;
        assert!(!is_steady(&a, now));
        let mut d = agent("d:1", node_state::SECONDARY, false);
        d.delay_secs = 3600;
        assert!(!is_steady(&d, now));
        let mut l = agent("l:1", node_state::SECONDARY, false);
        l.repl_lag = 21;
        assert!(!is_steady(&l, now));
        let mut s = agent("x:1", node_state::SECONDARY, false);
        s.storage_status.ok = false;
        assert!(!is_steady(&s, now));
        assert!(!is_steady(
            &agent("old:1", node_state::SECONDARY, false),
            bson::Timestamp {
                time: 131,
                increment: 0
            }
        ));
    }
}
