//! Running checks: pick up due organizations, check them concurrently within the limits,
//! confirm "access is gone" with a second look, and store each result, the organization's
//! new state and the alerts it causes in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::observe::{Target, observe};
use super::verdict::{
    CheckPolicy, Finding, FindingKind, Observations, OurSecret, RotationFailure, RotationView,
    State, Verdict, decide,
};
use crate::checks::alerting::{self as lifecycle, Subject};
use crate::context::Context;
use crate::store::{self, checks::TargetRow};
use crate::target::{endpoints, resources};

/// The result of one organization's check, as the CLI prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckOutcome {
    pub organization: String,
    pub organization_id: crate::domain::OrganizationId,
    pub state: State,
    /// The state before this check.
    pub previous_state: State,
    pub findings: Vec<Finding>,
    pub secret_expires_at: Option<DateTime<Utc>>,
    pub alerts_fired: Vec<String>,
    pub alerts_resolved: Vec<String>,
}

/// Limits shared by every check of one pass.
struct Limits {
    checks: Semaphore,
    per_tenant: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    per_tenant_permits: usize,
}

impl Limits {
    fn new(context: &Context) -> Limits {
        Limits {
            checks: Semaphore::new(context.settings.checks.max_concurrent_checks),
            per_tenant: Mutex::new(HashMap::new()),
            per_tenant_permits: context.settings.checks.max_checks_per_tenant,
        }
    }

    fn tenant(&self, tenant: Uuid) -> Arc<Semaphore> {
        self.per_tenant
            .lock()
            .expect("limits lock")
            .entry(tenant)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant_permits)))
            .clone()
    }
}

/// Checks every due organization (the scheduled job). Returns a summary line.
///
/// A pipeline, not batches: due organizations are claimed as slots free up, so a slow
/// check never holds back the ones behind it.
pub async fn check_due(context: &Context) -> anyhow::Result<String> {
    let limits = Arc::new(Limits::new(context));
    let queue_limit = context.settings.checks.max_concurrent_checks * 2;
    let mut tasks = tokio::task::JoinSet::new();
    let mut exhausted = false;
    let mut checked = 0;
    let mut failed = 0;
    loop {
        // Refill in chunks when half the queue has drained: one claim per chunk, not per check.
        while !exhausted && tasks.len() <= queue_limit / 2 && !context.shutdown.is_cancelled() {
            let wanted = i64::try_from((queue_limit - tasks.len()).max(1)).unwrap_or(i64::MAX);
            let rows = {
                let mut connection = context.pool.acquire().await?;
                let now = Utc::now();
                let lease = lease_until(context, now);
                let ids = store::checks::claim_due(&mut connection, now, lease, wanted).await?;
                if ids.is_empty() {
                    exhausted = true;
                    break;
                }
                store::checks::targets(&mut connection, &ids).await?
            };
            for row in rows {
                spawn_check(&mut tasks, context, &limits, row);
            }
        }
        match tasks.join_next().await {
            None => break,
            Some(Ok((_, Ok(_)))) => checked += 1,
            Some(Ok((name, Err(error)))) => {
                tracing::error!(organization = %name, "check could not be stored: {error:#}");
                failed += 1;
            }
            Some(Err(error)) => {
                tracing::error!("check task failed: {error}");
                failed += 1;
            }
        }
    }
    if checked == 0 && failed == 0 {
        return Ok(String::new());
    }
    Ok(format!(
        "checked {checked} organization(s), {failed} failed to store"
    ))
}

/// The lease covers a check with its confirmation; a result moves it on.
fn lease_until(context: &Context, now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(
        context.settings.checks.confirm_delay * 4 + std::time::Duration::from_secs(600),
    )
    .unwrap_or_default()
}

type CheckTasks = tokio::task::JoinSet<(String, anyhow::Result<CheckOutcome>)>;

fn spawn_check(tasks: &mut CheckTasks, context: &Context, limits: &Arc<Limits>, row: TargetRow) {
    let context = context.clone();
    let limits = limits.clone();
    tasks.spawn(async move {
        let name = row.name.clone();
        let result = check_one(&context, row, &limits).await;
        (name, result)
    });
}

/// Checks the given organizations now, concurrently; one's failure never stops the others.
pub async fn check_organizations(
    context: &Context,
    ids: &[crate::domain::OrganizationId],
) -> anyhow::Result<Vec<(String, anyhow::Result<CheckOutcome>)>> {
    let rows = {
        let mut connection = context.pool.acquire().await?;
        // The lease the daemon takes: no daemon checks these while this runs.
        store::checks::claim(&mut connection, ids, lease_until(context, Utc::now())).await?;
        store::checks::targets(&mut connection, ids).await?
    };
    let limits = Arc::new(Limits::new(context));
    let mut tasks = CheckTasks::new();
    for row in rows {
        spawn_check(&mut tasks, context, &limits, row);
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(error) => results.push((
                "?".into(),
                Err(anyhow::anyhow!("check task failed: {error}")),
            )),
        }
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(results)
}

/// A verdict for a check that could not even start (no secret, unknown cloud).
fn cannot_check(reason: String) -> Verdict {
    Verdict {
        state: State::CheckFailed,
        findings: vec![Finding {
            kind: FindingKind::CheckIncomplete,
            severity: FindingKind::CheckIncomplete.severity(),
            message: format!("the check could not run: {reason}"),
            details: serde_json::Value::Null,
        }],
        secret_expires_at: None,
        learned_key_id: None,
    }
}

struct Prepared {
    target: Target,
}

/// What the rotation journal says of the organization, for the verdict.
fn rotation_view(context: &Context, row: &TargetRow) -> RotationView {
    RotationView {
        enabled: crate::target::rotation_status(
            &context.settings.rotation,
            &crate::target::RotationFacts {
                name: &row.name,
                settings: &row.settings.0,
                secret_start: row.start_at,
                secret_end: row.end_at,
                next_attempt: None,
            },
        )
        .is_on(),
        failure: match (&row.rotation_failure, row.rotation_failing_since) {
            (Some(reason), Some(since)) => Some(RotationFailure {
                reason: crate::domain::rotation::FailureReason::parse(reason),
                error: row.rotation_error.clone().unwrap_or_default(),
                attempts: row.rotation_attempts.unwrap_or(1),
                since,
            }),
            _ => None,
        },
    }
}

fn prepare(context: &Context, row: &TargetRow) -> Result<Prepared, String> {
    let endpoints = endpoints(context, row)?;
    let (Some(credential_id), Some(sealed), Some(seal_key)) = (
        row.credential_id,
        row.secret_sealed.clone(),
        row.secret_key_id.clone(),
    ) else {
        return Err("no current client secret is stored (kodo-access org set-secret)".into());
    };
    let secret: SecretString = context.open_secret(row.id, credential_id, &seal_key, &sealed)?;
    let credential = match (row.credential_kind, &row.certificate) {
        (Some(crate::domain::CredentialKind::Certificate), Some(der)) => {
            let certificate = crate::microsoft::ClientCertificate::stored(
                der,
                secrecy::ExposeSecret::expose_secret(&secret).as_bytes(),
            )
            .map_err(|error| format!("the stored certificate cannot be used: {error}"))?;
            crate::microsoft::Credential::Certificate(std::sync::Arc::new(certificate))
        }
        // Never a private key sent as a client secret.
        (Some(crate::domain::CredentialKind::Certificate), None) => {
            return Err("the stored certificate credential has no certificate".into());
        }
        _ => crate::microsoft::Credential::Secret(secret),
    };
    let resources = resources(context, row);
    Ok(Prepared {
        target: Target {
            organization_id: row.id,
            name: row.name.clone(),
            endpoints,
            resources,
            credential,
            our_secret: OurSecret {
                key_id: row.key_id,
                hint: row.hint.clone(),
                end: row.end_at,
                known_key_ids: row.known_key_ids.clone(),
                thumbprint: row.thumbprint.clone(),
            },
        },
    })
}

async fn look(context: &Context, limits: &Limits, target: &Target) -> Observations {
    let tenant = limits.tenant(target.endpoints.tenant_id.as_uuid());
    let _tenant = tenant.acquire().await.expect("never closed");
    let _slot = limits.checks.acquire().await.expect("never closed");
    observe(
        &context.microsoft,
        &context.settings.microsoft.manifest,
        target,
    )
    .await
}

/// One check's verdict: a look, and for a state that means "access is gone" a second look
/// that agrees. `None` when the organization's current secret changed before the second
/// look (the first was taken with a secret no longer current).
async fn judge(
    context: &Context,
    row: &TargetRow,
    limits: &Limits,
    policy: &CheckPolicy,
) -> anyhow::Result<Option<(Verdict, Observations)>> {
    let rotation = rotation_view(context, row);
    let previous = Some(row.state);
    let prepared = match prepare(context, row) {
        Err(reason) => return Ok(Some((cannot_check(reason), Observations::default()))),
        Ok(prepared) => prepared,
    };
    let target = &prepared.target;
    let mut first_look = look(context, limits, target).await;
    first_look.rotation = rotation.clone();
    let first = decide(&first_look, policy, Utc::now());
    if !first.state.needs_confirmation() || previous == Some(first.state) {
        return Ok(Some((first, first_look)));
    }
    // Access looks gone: believe it only if a second look agrees.
    tracing::info!(
        state = first.state.as_str(),
        "looks like {}: confirming in {}s",
        first.state.as_str(),
        context.settings.checks.confirm_delay.as_secs()
    );
    tokio::select! {
        _ = tokio::time::sleep(context.settings.checks.confirm_delay) => {}
        _ = context.shutdown.cancelled() => anyhow::bail!("shutting down before confirming {}", row.name),
    }
    // With the secret current now: a rotation may have replaced it meanwhile.
    let current = {
        let mut connection = context.pool.acquire().await?;
        store::checks::current_credential(&mut connection, row.id).await?
    };
    if current != row.credential_id {
        return Ok(None);
    }
    let mut second_look = look(context, limits, target).await;
    second_look.rotation = rotation;
    let second = decide(&second_look, policy, Utc::now());
    if second.state.needs_confirmation() && second.state != first.state {
        let mut unconfirmed = cannot_check(format!(
            "two looks disagree ({} then {})",
            first.state.as_str(),
            second.state.as_str()
        ));
        unconfirmed.findings.extend(second.findings);
        return Ok(Some((unconfirmed, second_look)));
    }
    Ok(Some((second, second_look)))
}

#[tracing::instrument(name = "check", skip_all, fields(organization = %row.name))]
async fn check_one(
    context: &Context,
    row: TargetRow,
    limits: &Limits,
) -> anyhow::Result<CheckOutcome> {
    let started = Instant::now();
    let started_at = Utc::now();
    let policy = CheckPolicy {
        manifest: context.settings.microsoft.manifest.clone(),
        warning_window: chrono::Duration::from_std(context.settings.checks.warning_window)
            .unwrap_or(chrono::Duration::days(30)),
        rotation_lead_time: context
            .settings
            .rotation
            .policy
            .for_organization(&row.settings.0)
            .lead_time,
    };
    // A verdict is about the secret it was computed with: when a rotation makes another
    // one current meanwhile, the check starts over with that one (a few times at most).
    let mut row = row;
    let mut rounds = 0;
    let (verdict, outcome) = loop {
        rounds += 1;
        let judged = judge(context, &row, limits, &policy).await?;
        if let Some((verdict, observations)) = judged
            && let Some(outcome) =
                store_result(context, &row, &verdict, &observations, started_at).await?
        {
            break (verdict, outcome);
        }
        if rounds == 3 {
            anyhow::bail!(
                "the secret of {} kept changing during the check; nothing stored",
                row.name
            );
        }
        tracing::info!(
            "the current secret changed during the check: checking again with the new one"
        );
        let mut connection = context.pool.acquire().await?;
        row = store::checks::targets(&mut connection, &[row.id])
            .await?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("{} was removed during the check", row.name))?;
    };
    crate::telemetry::metrics::check_finished(verdict.state.as_str(), started.elapsed());
    for kind in &outcome.alerts_fired {
        let message = verdict
            .findings
            .iter()
            .find(|f| f.kind.as_str() == kind)
            .map(|f| f.message.as_str())
            .unwrap_or("checks keep failing");
        tracing::warn!(alert = %kind, "alert firing: {message}");
    }
    for kind in &outcome.alerts_resolved {
        tracing::info!(alert = %kind, "alert resolved");
    }
    tracing::info!(
        state = verdict.state.as_str(),
        elapsed_ms = crate::domain::millis(started.elapsed()),
        "checked"
    );
    Ok(outcome)
}

/// The next check time: each organization keeps its own phase within the interval, so
/// checks spread evenly instead of bunching where organizations were added.
pub fn next_check(
    organization_id: crate::domain::OrganizationId,
    interval: std::time::Duration,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    // At most a year: a longer interval is refused by the configuration anyway.
    let interval = interval.as_secs().clamp(1, 366 * 86_400);
    let phase =
        i64::try_from(organization_id.as_uuid().as_u128() % u128::from(interval)).unwrap_or(0);
    let interval = i64::try_from(interval).unwrap_or(i64::MAX);
    let now_secs = now.timestamp();
    let offset = (now_secs - phase).rem_euclid(interval);
    let mut next = now_secs - offset + interval;
    // Never sooner than half an interval: an organization checked off its phase (new, or
    // checked by hand) drifts to its phase instead of being checked twice in a row.
    if next - now_secs < interval / 2 {
        next += interval;
    }
    DateTime::from_timestamp(next, 0).unwrap_or(now)
}

/// Rotation failures whose cause a check can see gone: access (consent, the secret, the
/// app) and the rotation permission.
const CAUSES_A_CHECK_SEES: &[&str] = &["access_lost", "not_authorized"];

/// Whether this check shows the cause of the rotation's last failure gone: access works and,
/// for a refusal, the rotation permission is granted. The rotation then tries again at once
/// (and its finding clears when it succeeds) instead of waiting out its backoff; a refusal
/// that persists (the app not owning itself) is tried again once per check.
fn cause_gone(row: &TargetRow, verdict: &Verdict) -> bool {
    let access_works = matches!(
        verdict.state,
        State::Healthy | State::Degraded | State::SecretExpiring | State::PermissionsMissing
    );
    let permission_missing = verdict
        .findings
        .iter()
        .any(|finding| finding.kind == FindingKind::RotationPermissionMissing);
    match row.rotation_failure.as_deref() {
        Some("access_lost") => access_works,
        Some("not_authorized") => access_works && !permission_missing,
        _ => false,
    }
}

async fn store_result(
    context: &Context,
    row: &TargetRow,
    verdict: &Verdict,
    observations: &Observations,
    started_at: DateTime<Utc>,
) -> anyhow::Result<Option<CheckOutcome>> {
    let now = Utc::now();
    let settings = &context.settings.checks;
    let failed = verdict.state == State::CheckFailed;
    let failing_since = if failed {
        Some(row.failing_since.unwrap_or(now))
    } else {
        None
    };
    let failing_too_long = failing_since.is_some_and(|since| {
        now - since >= chrono::Duration::from_std(settings.failing_alert_after).unwrap_or_default()
    });
    let last_known = if failed {
        row.last_known_state.or_else(|| {
            (!matches!(row.state, State::Unknown | State::CheckFailed)).then_some(row.state)
        })
    } else {
        Some(verdict.state)
    };
    let next_check_at = if failed {
        now + chrono::Duration::from_std(settings.retry_failed_after).unwrap_or_default()
    } else {
        next_check(row.id, settings.interval, now)
    };
    let findings = serde_json::to_value(&verdict.findings)?;
    store::count_statements(2); // BEGIN and COMMIT
    let mut transaction = context.pool.begin().await?;
    // A verdict computed with a secret that is no longer current is dropped, not stored.
    if store::checks::current_credential(&mut transaction, row.id).await? != row.credential_id {
        return Ok(None);
    }
    let learned = row
        .credential_id
        .filter(|_| {
            !failed && (verdict.learned_key_id.is_some() || verdict.secret_expires_at != row.end_at)
        })
        .map(|credential_id| store::checks::LearnedSecret {
            credential_id,
            key_id: verdict.learned_key_id,
            end_at: verdict.secret_expires_at,
        });
    let firing = store::checks::record(
        &mut transaction,
        store::checks::CheckRecord {
            organization_id: row.id,
            started_at,
            finished_at: now,
            state: verdict.state,
            findings,
            observations: observations.summary(),
        },
        store::checks::StatusUpdate {
            organization_id: row.id,
            last_known_state: last_known,
            checked_at: now,
            succeeded_at: (!failed).then_some(now),
            failing_since,
            next_check_at,
        },
        learned,
    )
    .await?;
    if cause_gone(row, verdict) {
        store::rotations::retry_soon(&mut transaction, row.id, CAUSES_A_CHECK_SEES).await?;
    }
    let (new_alerts, plan) = store_alerts(
        context,
        &mut transaction,
        row,
        verdict,
        &firing,
        failing_too_long,
        now,
    )
    .await?;
    transaction.commit().await?;
    Ok(Some(CheckOutcome {
        organization: row.name.clone(),
        organization_id: row.id,
        state: verdict.state,
        previous_state: row.state,
        findings: verdict.findings.clone(),
        secret_expires_at: verdict.secret_expires_at,
        alerts_fired: new_alerts.iter().map(|a| a.kind.clone()).collect(),
        alerts_resolved: plan.resolve.iter().map(|a| a.kind.clone()).collect(),
    }))
}

/// The alert changes a check's verdict causes, written with the check (same transaction):
/// new alerts, resolved ones, changed texts, and their notifications in the outbox.
async fn store_alerts(
    context: &Context,
    connection: &mut sqlx::PgConnection,
    row: &TargetRow,
    verdict: &Verdict,
    firing: &[store::alerts::FiringRow],
    failing_too_long: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<(Vec<store::alerts::NewAlert>, lifecycle::Plan)> {
    let endpoints_consent = endpoints(context, row)
        .map(|endpoints| endpoints.admin_consent_url().to_string())
        .unwrap_or_default();
    let subject = Subject {
        organization: &row.name,
        tenant_id: row.tenant_id,
        client_id: row.client_id,
        labels: &row.labels.0,
        admin_consent_url: endpoints_consent,
    };
    let plan = lifecycle::plan(verdict, &subject, firing, failing_too_long);
    let new_alerts: Vec<store::alerts::NewAlert> = plan
        .fire
        .iter()
        .map(|alert| store::alerts::NewAlert {
            id: Uuid::now_v7(),
            kind: alert.kind.clone(),
            severity: alert.severity.clone(),
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
        })
        .collect();
    store::alerts::insert_firing(connection, row.id, now, &new_alerts).await?;
    let resolved_ids: Vec<Uuid> = plan.resolve.iter().map(|alert| alert.id).collect();
    store::alerts::resolve(connection, &resolved_ids, now).await?;
    store::alerts::update_annotations(connection, &plan.update).await?;
    let mut notifications = Vec::new();
    for alert in &new_alerts {
        notifications.push((
            alert.id,
            store::alerts::payload(
                "firing",
                alert.id,
                &alert.kind,
                &alert.labels,
                &alert.annotations,
                now,
                None,
            ),
        ));
    }
    for alert in &plan.resolve {
        notifications.push((
            alert.id,
            store::alerts::payload(
                "resolved",
                alert.id,
                &alert.kind,
                &alert.labels,
                &alert.annotations,
                alert.started_at,
                Some(now),
            ),
        ));
    }
    store::alerts::enqueue(
        connection,
        &context.settings.alerts.sink_names(),
        &notifications,
    )
    .await?;
    Ok((new_alerts, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_checks_keep_a_phase_and_spread_over_the_interval() {
        let interval = std::time::Duration::from_secs(900);
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut offsets = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let id = crate::domain::OrganizationId::from_uuid(Uuid::new_v4());
            let next = next_check(id, interval, now);
            // At least half an interval ahead, at most one and a half.
            assert!(
                next >= now + chrono::Duration::seconds(450)
                    && next <= now + chrono::Duration::seconds(1350)
            );
            // The same phase next time round.
            assert_eq!(
                next_check(id, interval, next),
                next + chrono::Duration::seconds(900)
            );
            offsets.insert(next.timestamp().rem_euclid(900) / 90);
        }
        assert_eq!(
            offsets.len(),
            10,
            "200 organizations land in every tenth of the interval"
        );
    }
}
