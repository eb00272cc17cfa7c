//! A node waiting in line before it joins. The node asks the address it
//! was given whether the cluster can take it ([`super::WaitRequest`]): a
//! master's join service says yes (it runs once the control plane does); the install
//! wizard, while the admin is still choosing (its CAPACITY step, before the
//! first node is installed), says not yet and shows the node with its
//! preflight results. The node asks again every few seconds; while the
//! first node is being installed its join port is closed for a while, which
//! a node that was already in line waits through.

use std::time::{Duration, Instant};

use super::client::{self, JoinError};
use super::{JoinRequest, WaitRequest};
use crate::error::InstallError;
use crate::preflight::CheckResult;
use crate::reporter::InstallReporter;
use crate::token::Token;

/// How long a node waits in line: as long as its token lives.
pub const WAIT_LIMIT: Duration = crate::token::DEFAULT_TTL;
/// How often it asks.
const EVERY: Duration = Duration::from_secs(3);

/// What a node is to join as; the admin may change its profile (and so its
/// token) while it waits.
#[derive(Clone, Debug)]
pub struct Joiner {
    /// The request it will join with (its token's credential and profile).
    pub request: JoinRequest,
    /// Its token.
    pub token: Token,
}

/// The node's preflight checks for a profile (None when they cannot run
/// yet: the bundle is still to be fetched).
pub type Preflight<'a> = dyn Fn(Option<&str>) -> anyhow::Result<Option<Vec<CheckResult>>> + 'a;

fn refused(e: JoinError) -> anyhow::Error {
    InstallError::BadInput {
        message: e.to_string(),
        hint: e.hint(),
    }
    .into()
}

/// Waits until the cluster at `addr` can take `joiner`, with the cluster CA
/// `ca_pem` (checked against the token's pin); the answer that said so. Checks that fail while the
/// node waits are shown on the wizard's page once and end the wait with
/// [`InstallError::Preflight`]; a profile the admin gives the node replaces
/// its own, with the token for it, and the checks run again for it.
pub fn wait_for_cluster(
    addr: &str,
    ca_pem: &str,
    joiner: &mut Joiner,
    preflight: &Preflight<'_>,
    reporter: &dyn InstallReporter,
) -> anyhow::Result<super::WaitAnswer> {
    let begun = Instant::now();
    let mut checks: Option<Option<Vec<CheckResult>>> = None;
    let mut in_line = false;
    loop {
        let results = match &checks {
            Some(r) => r.clone(),
            None => {
                let r = preflight(joiner.request.role.as_deref())?;
                checks = Some(r.clone());
                r
            }
        };
        let request = WaitRequest {
            join: joiner.request.clone(),
            checks: results.clone(),
        };
        match client::wait(addr, ca_pem, &request) {
            Ok(answer) if answer.ready => {
                if in_line {
                    reporter.note(&format!("the cluster at {addr} takes this node now"));
                }
                return Ok(answer);
            }
            Ok(answer) => {
                if !in_line {
                    reporter.note(&format!("{} (asked {addr})", answer.message));
                }
                in_line = true;
                if let Some(profile) = answer
                    .profile
                    .filter(|p| Some(p) != joiner.request.role.as_ref())
                {
                    let Some(token) = answer.token else {
                        anyhow::bail!(
                            "{addr} gave this node the profile {profile} without its token"
                        );
                    };
                    let token = Token::from_credential(&token)
                        .map(|t| Token {
                            ca_pin: joiner.token.ca_pin.clone(),
                            ..t
                        })
                        .map_err(|e| anyhow::anyhow!("{addr} sent a token that is not one: {e}"))?;
                    reporter.note(&format!(
                        "the admin gave this node the profile {profile}: its checks run again for it"
                    ));
                    joiner.request.role = Some(profile);
                    joiner.request.token = token.credential();
                    joiner.token = token;
                    checks = None;
                    continue;
                }
                if let Some(r) = results.filter(|r| crate::preflight::failed(r)) {
                    reporter.note(&crate::preflight::render_table(&r));
                    return Err(InstallError::Preflight { results: r }.into());
                }
                reporter.waiting(&answer.message, begun.elapsed(), WAIT_LIMIT);
            }
            // The wizard closed its line to install the first node, whose
            // join service is not up yet.
            Err(JoinError::Unreachable { .. }) if in_line && begun.elapsed() < WAIT_LIMIT => {
                reporter.waiting(
                    "the first node is being installed; its join service is not up yet",
                    begun.elapsed(),
                    WAIT_LIMIT,
                );
            }
            Err(e) => return Err(refused(e)),
        }
        if begun.elapsed() >= WAIT_LIMIT {
            return Err(InstallError::bad_input(
                format!("the cluster at {addr} did not take this node within {} hours", WAIT_LIMIT.as_secs() / 3600),
                "install the first node (the wizard's Install button), then run the join command again",
            )
            .into());
        }
        crate::interrupt::check()?;
        std::thread::sleep(EVERY);
    }
}
