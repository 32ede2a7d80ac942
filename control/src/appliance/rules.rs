//! Rule loading: reads and validates the rule set the configuration names,
//! and swaps a reloaded set in whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ftfw_dataplane::acl::{self, AclError, Action, RuleSet};
use ftfw_dataplane::worker::ActiveRules;

use super::Appliance;
use crate::config::{Config, Policy, RulesSource};
use crate::console::proto::{ReloadResult, RuleLine, RulesInfo, RulesSummary};
use crate::takeover::unix_now;

/// The rule set in force and where it came from.
#[derive(Debug, Clone)]
pub(super) struct LoadedRules {
    pub(super) set: RuleSet,
    pub(super) source: String,
    pub(super) loaded_at: u64,
}

/// Why a rule set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The rules file could not be read.
    #[error("{}: cannot read rules", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rule is invalid (the error names file and line).
    #[error(transparent)]
    Parse(#[from] AclError),
}

/// `e` and its sources, `: `-separated (what the operator reads).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A rules reload the appliance refused; the running set stays.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReloadError(pub String);

fn policy_action(p: Policy) -> Action {
    match p {
        Policy::Accept => Action::Accept,
        Policy::Drop => Action::Drop,
        Policy::Reject => Action::Reject,
    }
}

/// Reads and validates the rule set the configuration names. Any error names
/// file and line; nothing is half-loaded.
pub(super) fn load_rules(config: &Config) -> Result<LoadedRules, RulesError> {
    let ports = |name: &str| config.port_index(name).and_then(|i| u16::try_from(i).ok());
    let default = policy_action(config.rules.policy);
    let (set, source) = match &config.rules.source {
        RulesSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
                path: path.clone(),
                source,
            })?;
            let name = path.display().to_string();
            let set = acl::parse_rules(&text, &name, 1, &ports)?;
            (set, name)
        }
        RulesSource::Inline(lines) => {
            let name = config.file.display().to_string();
            let set =
                acl::parse_rule_lines(lines.iter().map(|(l, t)| (*l, t.as_str())), &name, &ports)?;
            (set, format!("{name} [rules]"))
        }
        RulesSource::None => (
            RuleSet::from_rules(Vec::new(), default),
            "(no rules)".to_string(),
        ),
    };
    if config.dataplane.mode != crate::config::ForwardMode::Routed {
        if let Some((_, line)) = set
            .nat_rules()
            .iter()
            .find(|(r, _)| r.kind == ftfw_dataplane::nat::NatKind::Masquerade)
        {
            let file = match &config.rules.source {
                RulesSource::File(p) => p.display().to_string(),
                _ => config.file.display().to_string(),
            };
            return Err(RulesError::Parse(AclError {
                file,
                line,
                reason: acl::Reason::MasqueradeNeedsRouted,
            }));
        }
    }
    Ok(LoadedRules {
        set: set.with_default_policy(default),
        source,
        loaded_at: unix_now(),
    })
}

/// Validates a configuration file the way ftfwd does before starting
/// (syntax, fields, election timer bounds, and the rules it names). Used by
/// `ftfwd --check`.
pub fn check(path: &Path) -> anyhow::Result<Config> {
    let config = crate::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    load_rules(&config)?;
    Ok(config)
}

impl Appliance {
    /// Re-reads the rules named by the configuration and swaps them in
    /// whole; on any error the running set stays and the error is returned.
    pub fn reload_rules(&mut self) -> Result<ReloadResult, ReloadError> {
        let span = tracing::info_span!("rule_reload", generation = self.generation + 1);
        let _in = span.enter();
        match load_rules(&self.config) {
            Ok(loaded) => {
                let previous_count = self.loaded.set.len();
                self.generation += 1;
                self.rules.store(Arc::new(ActiveRules {
                    generation: self.generation,
                    classifier: loaded.set.compile(),
                    sync: sync_policy(&self.config, &loaded.set),
                    nat: loaded.set.nat_rules(),
                    helpers: helper_policy(&self.config, &loaded.set),
                }));
                self.loaded = loaded;
                self.last_reload_error = None;
                // Workers answer commands between iterations and load the
                // rules at the start of each: once they have answered,
                // every frame they take meets the new rules.
                self.refresh_counters();
                tracing::info!(rules = self.loaded.set.len(), source = %self.loaded.source, "rules reloaded");
                Ok(ReloadResult {
                    rules: self.rules_summary(),
                    previous_count,
                })
            }
            Err(e) => {
                let msg = chain(&e);
                tracing::warn!(error = %msg, "rules reload refused; the running rules stay");
                self.last_reload_error = Some(msg.clone());
                Err(ReloadError(msg))
            }
        }
    }

    /// Re-reads the static routes (`[[route]]`) of the configuration file
    /// `path` and swaps them in whole, in routed mode (workers take them at
    /// their next burst; nothing to do in transparent mode). Only the
    /// routes are applied: ports, addresses and the other sections need a
    /// restart. A file that does not load, or routes that do not make a
    /// table, are refused: the running routes stay, and the error (file and
    /// line where the file says them) is returned and shown as a failed
    /// reload in `ftfwctl status` until a reload succeeds. Returns the
    /// static routes in force.
    pub fn reload_routes(&mut self, path: &Path) -> Result<usize, ReloadError> {
        let Some(l3) = self.l3.clone() else {
            return Ok(0);
        };
        let span = tracing::info_span!("route_reload", file = %path.display());
        let _in = span.enter();
        let next = crate::config::load(path)
            .map_err(|e| e.to_string())
            .and_then(|new| {
                let mut next = self.config.clone();
                next.routes = new.routes;
                let table = crate::l3::l3_config(&next)
                    .map_err(|e| format!("{}: [[route]]: {e}", path.display()))?;
                Ok((next, table))
            });
        match next {
            Ok((next, table)) => {
                l3.set_config(table);
                self.config = next;
                self.last_route_reload_error = None;
                tracing::info!(routes = self.config.routes.len(), "static routes reloaded");
                Ok(self.config.routes.len())
            }
            Err(msg) => {
                tracing::warn!(error = %msg, "routes reload refused; the running routes stay");
                self.last_route_reload_error = Some(msg.clone());
                Err(ReloadError(msg))
            }
        }
    }

    /// Names the configuration file the appliance was started from, for
    /// [`Appliance::reload_configured_routes`] (SIGHUP and `ftfwctl routes
    /// reload`).
    pub fn set_config_path(&mut self, path: &Path) {
        self.config_path = Some(path.to_path_buf());
    }

    /// [`Appliance::reload_routes`] from the file named by
    /// [`Appliance::set_config_path`]; refused without one.
    pub fn reload_configured_routes(&mut self) -> Result<usize, ReloadError> {
        match self.config_path.clone() {
            Some(p) => self.reload_routes(&p),
            None => Err(ReloadError(
                "routes reload: ftfwd was not started from a configuration file".into(),
            )),
        }
    }

    /// The failed reloads still in force, rules first, for the console.
    pub(super) fn last_reload_errors(&self) -> Option<String> {
        match (&self.last_reload_error, &self.last_route_reload_error) {
            (Some(r), Some(t)) => Some(format!("{r}; routes: {t}")),
            (Some(r), None) => Some(r.clone()),
            (None, Some(t)) => Some(format!("routes: {t}")),
            (None, None) => None,
        }
    }

    pub(super) fn rules_summary(&self) -> RulesSummary {
        RulesSummary {
            count: self.loaded.set.len(),
            policy: self.loaded.set.policy().name().to_string(),
            source: self.loaded.source.clone(),
            loaded_at: self.loaded.loaded_at,
        }
    }

    pub(super) fn rules_info(&self) -> RulesInfo {
        RulesInfo {
            policy: self.loaded.set.policy().name().to_string(),
            source: self.loaded.source.clone(),
            loaded_at: self.loaded.loaded_at,
            rules: self
                .loaded
                .set
                .rules()
                .map(|v| RuleLine {
                    index: v.index as usize,
                    line: v.line,
                    text: v.text.to_string(),
                })
                .collect(),
            nat: self
                .loaded
                .set
                .nat_rules()
                .iter()
                .enumerate()
                .map(|(index, (r, line))| RuleLine {
                    index,
                    line,
                    text: r.to_string(),
                })
                .collect(),
        }
    }
}

/// The sync levels of `set` under `config`: rules' own, `[[sync.zone]]`
/// levels, `[sync] level` (full without `[sync]`: the state keeper of a
/// standalone node takes every change).
/// Which helper new flows get: their rule's, else by port from
/// `[dataplane] helpers`.
pub(super) fn helper_policy(
    config: &Config,
    set: &ftfw_dataplane::acl::RuleSet,
) -> ftfw_dataplane::helper::HelperPolicy {
    ftfw_dataplane::helper::HelperPolicy::new(set, config.dataplane.helpers.clone())
}

pub(super) fn sync_policy(
    config: &Config,
    set: &ftfw_dataplane::acl::RuleSet,
) -> ftfw_dataplane::worker::SyncPolicy {
    let (zones, default) = config.sync.as_ref().map_or_else(
        || (Vec::new(), ftfw_dataplane::flow::SyncLevel::Full),
        |s| (s.zone_levels.clone(), s.level),
    );
    ftfw_dataplane::worker::SyncPolicy::new(set, zones, default)
}
