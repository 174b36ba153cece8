//! The journaled rotation of one organization's client secret (issue 5's "How"), one step
//! after another, each recorded before the call to Microsoft that follows it, so that a
//! rotation interrupted anywhere resumes where it stopped:
//!
//! intent -> added (addPassword; the secret sealed at once) -> verified (tokens and a Graph
//! call with the new secret, retried while Microsoft propagates it) -> delivered (to every
//! deliverer) -> activated (the new secret becomes current) -> finished (after the grace
//! period, removePassword of the replaced secret, and only it).
//!
//! Recovery: a rotation resumes at its recorded step; at `intent`, a secret on the app that
//! carries the rotation's name was created by an attempt that died before storing it, and
//! is removed before a new one is added; at removal, a replaced secret already gone from the
//! app (removed by an attempt that died before recording it) counts as removed.
//!
//! A failed attempt records why (`FailureReason`) and when to try again; the checks turn
//! the reason into an alert that says what to do. The `failpoint` hooks let the tests kill
//! the process right before and right after every step.

use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use uuid::Uuid;

use super::deliver::{Deliverer, Delivery, deliver};
use super::plan::{self, RotationPolicy};
use crate::context::Context;
use crate::crypto::{SealContext, Sealed};
use crate::failpoint;
use crate::microsoft::{GraphError, GraphFailure, Resource, TokenError, TokenFailure};
use crate::store::{self, audit::AuditEntry};

#[derive(Debug, Clone)]
pub struct RotationSettings {
    pub policy: RotationPolicy,
    /// How long to keep trying the new secret while Microsoft propagates it.
    pub verify_timeout: Duration,
    /// How long the replaced secret stays valid after the new one is current.
    pub grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub rotation_id: Uuid,
    /// The step the rotation reached (`finished` when the old secret is gone).
    pub step: String,
    pub new_key_id: Option<Uuid>,
}

/// Why a rotation attempt failed, as recorded and as the alerts name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Graph answered 403 to a secret change: no Application.ReadWrite.OwnedBy, or the app
    /// does not own itself.
    NotAuthorized,
    /// The tenant's app-management policy allows no client secrets.
    SecretsNotAllowed,
    /// The policy refused even the shortest lifetime tried.
    LifetimePolicy,
    /// The current secret no longer gets tokens, or the app is gone: the checks say which.
    AccessLost,
    /// The new secret still failed when the verification limit ran out.
    NotVerified,
    /// A deliverer failed; the new secret does not become current until all succeed.
    DeliveryFailed,
    /// Throttling or a Microsoft outage outlasted the retries.
    MicrosoftUnavailable,
    Failed,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NotAuthorized => "not_authorized",
            FailureReason::SecretsNotAllowed => "secrets_not_allowed",
            FailureReason::LifetimePolicy => "lifetime_policy",
            FailureReason::AccessLost => "access_lost",
            FailureReason::NotVerified => "not_verified",
            FailureReason::DeliveryFailed => "delivery_failed",
            FailureReason::MicrosoftUnavailable => "microsoft_unavailable",
            FailureReason::Failed => "failed",
        }
    }
}

/// A failed attempt: why, and what happened, for people.
#[derive(Debug)]
struct Failure {
    reason: FailureReason,
    message: String,
}

impl From<GraphError> for Failure {
    fn from(error: GraphError) -> Failure {
        let reason = match error.kind {
            GraphFailure::Forbidden => FailureReason::NotAuthorized,
            GraphFailure::SecretsNotAllowed => FailureReason::SecretsNotAllowed,
            GraphFailure::LifetimeTooLong => FailureReason::LifetimePolicy,
            GraphFailure::Unauthorized | GraphFailure::NotFound => FailureReason::AccessLost,
            GraphFailure::Throttled | GraphFailure::Transient => {
                FailureReason::MicrosoftUnavailable
            }
            GraphFailure::BadRequest | GraphFailure::Unknown => FailureReason::Failed,
        };
        Failure {
            reason,
            message: error.to_string(),
        }
    }
}

impl From<TokenError> for Failure {
    fn from(error: TokenError) -> Failure {
        let reason = match error.kind {
            kind if kind.is_retryable() => FailureReason::MicrosoftUnavailable,
            TokenFailure::SecretInvalid
            | TokenFailure::SecretExpired
            | TokenFailure::AppNotFound
            | TokenFailure::ServicePrincipalMissing
            | TokenFailure::AppDisabled
            | TokenFailure::TenantNotFound
            | TokenFailure::WrongCloud
            | TokenFailure::BlockedByPolicy => FailureReason::AccessLost,
            _ => FailureReason::Failed,
        };
        Failure {
            reason,
            message: error.to_string(),
        }
    }
}

const ACTOR: &str = "rotation";

fn display_name(rotation_id: Uuid) -> String {
    format!("kodo-access rotation {rotation_id}")
}

/// Another kodo-access (or another command) is rotating this organization right now.
#[derive(Debug, thiserror::Error)]
#[error("another kodo-access is rotating organization {0} right now")]
pub struct RotationBusy(pub Uuid);

/// Starts a rotation if none is open, else resumes the open one, and drives it as far as it
/// can go now. Every step that changes something (the intent, addPassword, delivery,
/// activation, removePassword) runs holding the organization's rotation lock in
/// PostgreSQL: at most one rotation of an organization runs at a time across all daemons,
/// and a daemon that dies releases it with its connection. Verification, which only reads
/// and may wait minutes for Microsoft's propagation, runs without the lock, so that a
/// thousand rotations can wait at once without a thousand database connections.
pub async fn rotate(
    context: &Context,
    organization_id: Uuid,
    deliverers: &[Deliverer],
    settings: &RotationSettings,
) -> anyhow::Result<Report> {
    rotate_with(
        context,
        organization_id,
        deliverers,
        settings,
        Trigger::OnDemand,
    )
    .await
}

/// As `rotate`, for the scheduled job: starts a rotation only if the plan says it is due,
/// and resumes one only if its wait is over, both judged again under the lock (another
/// daemon may have finished or claimed it since the job looked).
pub async fn rotate_if_due(
    context: &Context,
    organization_id: Uuid,
    deliverers: &[Deliverer],
    settings: &RotationSettings,
) -> anyhow::Result<Report> {
    rotate_with(context, organization_id, deliverers, settings, Trigger::Due).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Due,
    OnDemand,
}

/// `Report::step` when there was nothing to do after all.
pub const NOT_DUE: &str = "not_due";

async fn rotate_with(
    context: &Context,
    organization_id: Uuid,
    deliverers: &[Deliverer],
    settings: &RotationSettings,
    trigger: Trigger,
) -> anyhow::Result<Report> {
    let result = async {
        let report =
            rotate_under_lock(context, organization_id, deliverers, settings, trigger).await?;
        if report.step != "added" {
            return Ok(report);
        }
        verify(context, organization_id, report.rotation_id, settings).await?;
        // Verified now: whatever the trigger, go on.
        rotate_under_lock(
            context,
            organization_id,
            deliverers,
            settings,
            Trigger::OnDemand,
        )
        .await
    }
    .await;
    match result {
        Err(error)
            if !error.is::<RotationBusy>()
                && !error.is::<RecordedFailure>()
                && !error.is::<LockLost>() =>
        {
            // A database error, a secret that does not open, a lost lock: recorded like any
            // failure (backoff, alert) when a rotation is under way.
            Err(record_unexpected(context, organization_id, error).await)
        }
        other => other,
    }
}

/// A failure already recorded in the rotation's journal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RecordedFailure(String);

async fn record_unexpected(
    context: &Context,
    organization_id: Uuid,
    error: anyhow::Error,
) -> anyhow::Error {
    let open = async {
        let mut connection = context.pool.acquire().await?;
        let history = store::rotations::history(&mut connection, Some(organization_id)).await?;
        Ok::<_, sqlx::Error>(history.into_iter().find(|row| row.finished_at.is_none()))
    };
    match open.await {
        Ok(Some(rotation)) => {
            record_failure(
                context,
                organization_id,
                &rotation.organization,
                rotation.id,
                rotation.attempts as u32,
                None,
                Failure {
                    reason: FailureReason::Failed,
                    message: format!("{error:#}"),
                },
            )
            .await
        }
        // Nothing started, or the database is away: nothing to record it in.
        _ => error,
    }
}

async fn rotate_under_lock(
    context: &Context,
    organization_id: Uuid,
    deliverers: &[Deliverer],
    settings: &RotationSettings,
    trigger: Trigger,
) -> anyhow::Result<Report> {
    // Each locked stretch holds two connections (the lock's and the work's); the slots keep
    // the pool from running dry, whatever the number of rotations under way.
    let _slot = context.rotation_slots.acquire().await?;
    let mut lock = context.pool.acquire().await?;
    if !store::rotations::try_lock(&mut lock, organization_id).await? {
        return Err(RotationBusy(organization_id).into());
    }
    let result = rotate_locked(
        context,
        &mut lock,
        organization_id,
        deliverers,
        settings,
        trigger,
    )
    .await;
    match store::rotations::unlock(&mut lock, organization_id).await {
        Ok(true) => {}
        // Never hand a connection that may still hold the lock back to the pool.
        _ => drop(lock.detach()),
    }
    result
}

/// Records a failed attempt (why, and when to try again) and returns the error to report.
async fn record_failure(
    context: &Context,
    organization_id: Uuid,
    organization: &str,
    rotation_id: Uuid,
    attempts: u32,
    at_step: Option<&str>,
    failure: Failure,
) -> anyhow::Error {
    let next = Utc::now() + plan::backoff(attempts + 1);
    let recorded = async {
        let mut connection = context.pool.acquire().await?;
        store::rotations::failed(
            &mut connection,
            rotation_id,
            at_step,
            failure.reason.as_str(),
            &failure.message,
            next,
        )
        .await?;
        // The check turns the failure into its alert now, not at its next turn.
        store::checks::check_soon(&mut connection, organization_id).await?;
        Ok::<(), sqlx::Error>(())
    };
    if let Err(error) = recorded.await {
        return anyhow::anyhow!(
            "rotation {rotation_id} of {organization} ({}): {}; and recording the failure failed: {error}",
            failure.reason.as_str(),
            failure.message
        );
    }
    crate::telemetry::metrics::rotation_failed(failure.reason.as_str());
    RecordedFailure(format!(
        "rotation {rotation_id} of {organization} ({}): {}; next attempt after {}",
        failure.reason.as_str(),
        failure.message,
        next.format("%Y-%m-%d %H:%M UTC")
    ))
    .into()
}

/// The `verified` step: the new secret gets a token for every checked resource and reads
/// Graph, however long propagation takes (up to the limit). Runs without the rotation
/// lock: it changes nothing at Microsoft. While it waits, the rotation is claimed (its next
/// attempt put off) so that other daemons leave it alone; the step is recorded only if no
/// one else recorded it meanwhile.
async fn verify(
    context: &Context,
    organization_id: Uuid,
    rotation_id: Uuid,
    settings: &RotationSettings,
) -> anyhow::Result<()> {
    let claim = settings.verify_timeout + Duration::from_secs(5);
    let (rotation, row, new_credential) = {
        let mut connection = context.pool.acquire().await?;
        if !store::rotations::claim_for_verification(&mut connection, rotation_id, claim).await? {
            return Ok(()); // moved on meanwhile
        }
        let rotation = store::rotations::by_id(&mut connection, rotation_id).await?;
        let row = store::checks::targets(&mut connection, &[organization_id])
            .await?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no organization {organization_id}"))?;
        let id = rotation
            .new_credential_id
            .ok_or_else(|| anyhow::anyhow!("rotation {rotation_id} has no new secret"))?;
        let credential = store::rotations::credential(&mut connection, id).await?;
        (rotation, row, credential)
    };
    let endpoints = crate::checks::run::endpoints(context, &row).map_err(anyhow::Error::msg)?;
    let new_secret = context
        .keyring
        .open(
            &Sealed {
                key_id: new_credential.secret_key_id.clone(),
                blob: new_credential.secret_sealed.clone(),
            },
            SealContext {
                organization_id,
                credential_id: new_credential.id,
            },
        )
        .map_err(|error| anyhow::anyhow!("the stored secret {error}"))?;
    failpoint::hit("rotation-before-verified").await;
    let mut resources = crate::checks::run::resources(context, &row);
    if !resources.contains(&Resource::Graph) {
        resources.insert(0, Resource::Graph);
    }
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        let attempt = async {
            for resource in &resources {
                let token = context
                    .microsoft
                    .token(&endpoints, &new_secret, *resource)
                    .await
                    .map_err(Failure::from)?;
                if *resource == Resource::Graph {
                    context
                        .microsoft
                        .get_application(&endpoints, &token)
                        .await
                        .map_err(Failure::from)?;
                }
            }
            Ok::<(), Failure>(())
        };
        match attempt.await {
            Ok(()) => break,
            Err(failure) if started.elapsed() + wait > settings.verify_timeout => {
                let failure = Failure {
                    reason: FailureReason::NotVerified,
                    message: format!(
                        "the new secret still does not work after {}s: {}",
                        settings.verify_timeout.as_secs(),
                        failure.message
                    ),
                };
                return Err(record_failure(
                    context,
                    organization_id,
                    &row.name,
                    rotation_id,
                    rotation.attempts as u32,
                    // Not if another daemon verified and went on meanwhile.
                    Some("added"),
                    failure,
                )
                .await);
            }
            Err(failure) => {
                tracing::info!(organization = %row.name, rotation = %rotation_id, "new secret not accepted yet: {}", failure.message);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = context.shutdown.cancelled() => anyhow::bail!("shutting down while verifying rotation {rotation_id}"),
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    failpoint::hit("rotation-after-verified").await;
    let mut transaction = context.pool.begin().await?;
    if store::rotations::advance(&mut transaction, rotation_id, "added", "verified").await? {
        store::audit::record(
            &mut transaction,
            AuditEntry {
                actor: ACTOR,
                action: "credential.verified",
                organization_id: Some(organization_id),
                organization_name: Some(&row.name),
                credential_id: Some(new_credential.id),
                key_id: new_credential.key_id,
                rotation_id: Some(rotation_id),
                ..Default::default()
            },
        )
        .await?;
    }
    transaction.commit().await?;
    Ok(())
}

async fn rotate_locked(
    context: &Context,
    lock: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    organization_id: Uuid,
    deliverers: &[Deliverer],
    settings: &RotationSettings,
    trigger: Trigger,
) -> anyhow::Result<Report> {
    let row = {
        let mut connection = context.pool.acquire().await?;
        store::checks::targets(&mut connection, &[organization_id])
            .await?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no organization {organization_id}"))?
    };
    let endpoints = crate::checks::run::endpoints(context, &row).map_err(anyhow::Error::msg)?;
    let open_secret =
        |credential: &store::rotations::CredentialRef| -> anyhow::Result<SecretString> {
            context
                .keyring
                .open(
                    &Sealed {
                        key_id: credential.secret_key_id.clone(),
                        blob: credential.secret_sealed.clone(),
                    },
                    SealContext {
                        organization_id,
                        credential_id: credential.id,
                    },
                )
                .map_err(|error| anyhow::anyhow!("the stored secret {error}"))
        };

    // intent
    let mut transaction = context.pool.begin().await?;
    let rotation =
        match store::rotations::open_for_update(&mut transaction, organization_id).await? {
            Some(open) if trigger == Trigger::Due && open.next_attempt_at > Utc::now() => {
                // Backing off, or claimed by a daemon verifying it.
                return Ok(Report {
                    rotation_id: open.id,
                    step: NOT_DUE.into(),
                    new_key_id: open.new_key_id,
                });
            }
            Some(open) => open,
            None if trigger == Trigger::Due
                && !row.end_at.is_some_and(|end| {
                    let policy = settings.policy.for_organization(&row.settings.0);
                    plan::decide(&policy, row.start_at, end, 0, None, Utc::now())
                        == plan::Decision::Rotate
                }) =>
            {
                // Finished by another daemon since the job looked.
                return Ok(Report {
                    rotation_id: Uuid::nil(),
                    step: NOT_DUE.into(),
                    new_key_id: None,
                });
            }
            None if row.credential_id.is_none() => {
                // Nothing to rotate, and a rotation started from nothing could never finish.
                return Err(crate::domain::input_error(format!(
                    "{} has no current secret to rotate: store one with kodo-access org set-secret",
                    row.name
                ))
                .into());
            }
            None => {
                failpoint::hit("rotation-before-intent").await;
                let rotation = store::rotations::begin(
                    &mut transaction,
                    Uuid::now_v7(),
                    organization_id,
                    row.credential_id,
                    "due",
                )
                .await?;
                store::audit::record(
                    &mut transaction,
                    AuditEntry {
                        actor: ACTOR,
                        action: "rotation.started",
                        organization_id: Some(organization_id),
                        organization_name: Some(&row.name),
                        credential_id: row.credential_id,
                        key_id: row.key_id,
                        rotation_id: Some(rotation.id),
                        ..Default::default()
                    },
                )
                .await?;
                transaction.commit().await?;
                failpoint::hit("rotation-after-intent").await;
                transaction = context.pool.begin().await?;
                rotation
            }
        };
    transaction.commit().await?;
    let rotation_id = rotation.id;
    let mut step = rotation.step.clone();
    let mut new_credential_id = rotation.new_credential_id;
    let mut new_key_id = rotation.new_key_id;
    let audit =
        |action: &'static str, credential_id: Option<Uuid>, key_id: Option<Uuid>| AuditEntry {
            actor: ACTOR,
            action,
            organization_id: Some(organization_id),
            organization_name: Some(&row.name),
            credential_id,
            key_id,
            rotation_id: Some(rotation_id),
            ..Default::default()
        };
    let name = row.name.clone();
    let attempts = rotation.attempts as u32;
    let fail = |failure: Failure| {
        let name = name.clone();
        async move {
            Err::<Report, anyhow::Error>(
                record_failure(
                    context,
                    organization_id,
                    &name,
                    rotation_id,
                    attempts,
                    None,
                    failure,
                )
                .await,
            )
        }
    };

    // added: addPassword, then the secret sealed and stored before anything else.
    if step == "intent" {
        let old = {
            let mut connection = context.pool.acquire().await?;
            let id = rotation
                .old_credential_id
                .ok_or_else(|| anyhow::anyhow!("no current secret to rotate"))?;
            store::rotations::credential(&mut connection, id).await?
        };
        let current = open_secret(&old)?;
        fence(lock, organization_id).await?;
        let token = match context
            .microsoft
            .token(&endpoints, &current, Resource::Graph)
            .await
        {
            Ok(token) => token,
            Err(error) => return fail(error.into()).await,
        };
        // A secret with this rotation's name that we do not hold was created by an attempt
        // that died between Microsoft's answer and our commit: nobody can ever use it.
        let application = match context.microsoft.get_application(&endpoints, &token).await {
            Ok(application) => application,
            Err(error) => return fail(error.into()).await,
        };
        let name = display_name(rotation_id);
        for orphan in application
            .password_credentials
            .iter()
            .filter(|credential| credential.display_name.as_deref() == Some(name.as_str()))
        {
            fence(lock, organization_id).await?;
            if let Err(error) = context
                .microsoft
                .remove_password(&endpoints, &token, orphan.key_id)
                .await
            {
                let mut failure = Failure::from(error);
                failure.message = format!(
                    "removing the orphan secret {}: {}",
                    orphan.key_id, failure.message
                );
                return fail(failure).await;
            }
            let mut connection = context.pool.acquire().await?;
            store::audit::record(
                &mut connection,
                audit("credential.orphan_removed", None, Some(orphan.key_id)),
            )
            .await?;
            tracing::warn!(organization = %row.name, rotation = %rotation_id, key_id = %orphan.key_id, "removed a secret an interrupted rotation had created");
        }
        // The configured lifetime, then shorter ones while the tenant's policy refuses.
        let limit = row
            .secret_lifetime_limit_days
            .map(|days| chrono::Duration::days(days.into()));
        let ladder = plan::lifetime_ladder(&settings.policy, limit);
        let mut created = None;
        for (index, lifetime) in ladder.iter().enumerate() {
            let end = Utc::now() + *lifetime;
            fence(lock, organization_id).await?;
            failpoint::hit("rotation-before-added").await;
            match context
                .microsoft
                .add_password(&endpoints, &token, &display_name(rotation_id), end)
                .await
            {
                Ok(new) => {
                    if index > 0 {
                        let mut connection = context.pool.acquire().await?;
                        store::rotations::learn_lifetime_limit(
                            &mut connection,
                            organization_id,
                            lifetime.num_days(),
                        )
                        .await?;
                        let mut entry = audit("rotation.lifetime_limited", None, None);
                        entry.details = serde_json::json!({
                            "asked_days": ladder[0].num_days(),
                            "accepted_days": lifetime.num_days(),
                            "why": "the tenant's app-management policy refused a longer lifetime",
                        });
                        store::audit::record(&mut connection, entry).await?;
                        tracing::warn!(organization = %row.name, rotation = %rotation_id, "the tenant's policy limits client secrets: asked {} days, got {}", ladder[0].num_days(), lifetime.num_days());
                    }
                    created = Some(new);
                    break;
                }
                Err(error)
                    if error.kind == GraphFailure::LifetimeTooLong && index + 1 < ladder.len() =>
                {
                    tracing::info!(organization = %row.name, rotation = %rotation_id, "the tenant's policy refused {} days; trying shorter", lifetime.num_days());
                }
                Err(error) => return fail(error.into()).await,
            }
        }
        let created = created.ok_or_else(|| anyhow::anyhow!("no lifetime to try"))?;
        failpoint::hit("rotation-after-added").await;
        let credential_id = Uuid::now_v7();
        let sealed = context.keyring.seal(
            &created.secret_text,
            SealContext {
                organization_id,
                credential_id,
            },
        );
        let mut transaction = context.pool.begin().await?;
        store::rotations::added(
            &mut transaction,
            store::rotations::NewSecret {
                rotation_id,
                credential_id,
                organization_id,
                key_id: created.key_id,
                hint: created.hint.as_deref(),
                display_name: created.display_name.as_deref(),
                start_at: created.start_date_time,
                end_at: created.end_date_time,
                sealed: &sealed,
            },
        )
        .await?;
        store::audit::record(
            &mut transaction,
            audit(
                "credential.added",
                Some(credential_id),
                Some(created.key_id),
            ),
        )
        .await?;
        transaction.commit().await?;
        step = "added".into();
        new_credential_id = Some(credential_id);
        new_key_id = Some(created.key_id);
    }
    let new_credential = {
        let mut connection = context.pool.acquire().await?;
        let id = new_credential_id
            .ok_or_else(|| anyhow::anyhow!("rotation {rotation_id} has no new secret"))?;
        store::rotations::credential(&mut connection, id).await?
    };
    let new_secret = open_secret(&new_credential)?;

    // verified: done without the lock (see `rotate`).
    if step == "added" {
        return Ok(Report {
            rotation_id,
            step,
            new_key_id,
        });
    }

    // delivered: every deliverer has the new secret before it becomes current.
    if step == "verified" {
        let delivery = Delivery {
            organization: &row.name,
            tenant_id: row.tenant_id,
            client_id: row.client_id,
            key_id: new_key_id,
            expires_at: new_credential.end_at,
            secret: &new_secret,
        };
        fence(lock, organization_id).await?;
        failpoint::hit("rotation-before-delivered").await;
        for deliverer in deliverers {
            if let Err(error) = deliver(&context.http, deliverer, &delivery).await {
                return fail(Failure {
                    reason: FailureReason::DeliveryFailed,
                    message: format!("delivery to {} failed: {error}", deliverer.describe()),
                })
                .await;
            }
        }
        failpoint::hit("rotation-after-delivered").await;
        let mut transaction = context.pool.begin().await?;
        store::rotations::set_step(&mut transaction, rotation_id, "delivered").await?;
        store::audit::record(
            &mut transaction,
            audit("credential.delivered", new_credential_id, new_key_id),
        )
        .await?;
        transaction.commit().await?;
        step = "delivered".into();
    }

    // activated
    if step == "delivered" {
        failpoint::hit("rotation-before-activated").await;
        let mut transaction = context.pool.begin().await?;
        store::rotations::activate(
            &mut transaction,
            rotation_id,
            organization_id,
            new_credential.id,
            settings.grace,
        )
        .await?;
        store::audit::record(
            &mut transaction,
            audit("credential.activated", new_credential_id, new_key_id),
        )
        .await?;
        // The next check looks at the new secret (and resolves any rotation alert).
        store::checks::check_soon(&mut transaction, organization_id).await?;
        transaction.commit().await?;
        failpoint::hit("rotation-after-activated").await;
        crate::telemetry::metrics::rotation_activated(
            (Utc::now() - rotation.created_at)
                .to_std()
                .unwrap_or_default(),
        );
        tracing::info!(organization = %row.name, rotation = %rotation_id, key_id = ?new_key_id, "the new secret is current");
        step = "activated".into();
        if !settings.grace.is_zero() {
            return Ok(Report {
                rotation_id,
                step,
                new_key_id,
            });
        }
    }

    // finished: after the grace period, the replaced secret (and only it) is removed.
    if step == "activated" {
        let old = {
            let mut connection = context.pool.acquire().await?;
            match rotation.old_credential_id {
                Some(id) => Some(store::rotations::credential(&mut connection, id).await?),
                None => None,
            }
        };
        let activated_at = new_credential.activated_at.unwrap_or_else(Utc::now);
        let grace = chrono::Duration::from_std(settings.grace).unwrap_or_default();
        if activated_at + grace > Utc::now() {
            return Ok(Report {
                rotation_id,
                step,
                new_key_id,
            });
        }
        let mut transaction = context.pool.begin().await?;
        if let Some(old) = old {
            match old.key_id {
                Some(old_key_id) => {
                    fence(lock, organization_id).await?;
                    let token = match context
                        .microsoft
                        .token(&endpoints, &new_secret, Resource::Graph)
                        .await
                    {
                        Ok(token) => token,
                        Err(error) => return fail(error.into()).await,
                    };
                    // Gone already when an attempt died after removing it.
                    let application =
                        match context.microsoft.get_application(&endpoints, &token).await {
                            Ok(application) => application,
                            Err(error) => return fail(error.into()).await,
                        };
                    let on_app = application
                        .password_credentials
                        .iter()
                        .any(|credential| credential.key_id == old_key_id);
                    if on_app {
                        fence(lock, organization_id).await?;
                        failpoint::hit("rotation-before-removed").await;
                        if let Err(error) = context
                            .microsoft
                            .remove_password(&endpoints, &token, old_key_id)
                            .await
                        {
                            return fail(error.into()).await;
                        }
                        failpoint::hit("rotation-after-removed").await;
                    }
                    store::rotations::mark_removed(&mut transaction, old.id).await?;
                    let mut entry = audit("credential.removed", Some(old.id), Some(old_key_id));
                    if !on_app {
                        entry.details = serde_json::json!({ "already_gone": true });
                    }
                    store::audit::record(&mut transaction, entry).await?;
                }
                None => {
                    // Never learned Microsoft's id of the old secret: leave it, say so.
                    let mut entry = audit("credential.not_removed", Some(old.id), None);
                    entry.details = serde_json::json!({ "reason": "its keyId was never learned; remove it in the portal" });
                    store::audit::record(&mut transaction, entry).await?;
                }
            }
        }
        // The removal and the end of the rotation commit together: a crash between them
        // would otherwise remove (and audit) the old secret twice.
        store::rotations::finish(&mut transaction, rotation_id, "succeeded").await?;
        transaction.commit().await?;
        crate::telemetry::metrics::rotation_finished();
        step = "finished".into();
    }
    Ok(Report {
        rotation_id,
        step,
        new_key_id,
    })
}

impl RotationSettings {
    pub fn from_config(settings: &crate::config::RotationSettings) -> RotationSettings {
        RotationSettings {
            policy: settings.policy,
            verify_timeout: settings.verify_timeout,
            grace: settings.grace,
        }
    }
}

/// The scheduled job: resumes unfinished rotations whose wait is over and starts the ones
/// that are due. One organization's failure never stops the others. Returns a summary.
pub async fn rotate_due(context: &Context) -> anyhow::Result<String> {
    let config = &context.settings.rotation;
    if !config.active() {
        // Switched off, or nowhere to deliver a new secret (the daemon said so at start).
        return Ok(String::new());
    }
    let candidates = {
        let mut connection = context.pool.acquire().await?;
        store::rotations::candidates(&mut connection).await?
    };
    let now = Utc::now();
    let due: Vec<(Uuid, String)> = candidates
        .into_iter()
        .filter(|candidate| config.active_for(&candidate.name, &candidate.settings))
        .filter(|candidate| {
            match (
                candidate.open_rotation,
                candidate.start_at,
                candidate.end_at,
            ) {
                (Some(_), _, _) => candidate.next_attempt_at.is_none_or(|at| at <= now),
                (None, start, Some(end)) => {
                    let policy = config.policy.for_organization(&candidate.settings);
                    plan::decide(&policy, start, end, 0, None, now) == plan::Decision::Rotate
                }
                // Without a known expiry there is nothing to plan on (a check learns it).
                _ => false,
            }
        })
        .map(|candidate| (candidate.organization_id, candidate.name))
        .collect();
    if due.is_empty() {
        return Ok(String::new());
    }
    let settings = RotationSettings::from_config(config);
    // Most of a rotation is waiting for Microsoft (propagation takes seconds to minutes),
    // so every due rotation runs at once: their locked stretches take turns
    // (`Context::rotation_slots`, bounded by the database pool) and their requests share
    // the Microsoft client's in-flight limit; a waiting rotation costs a small task.
    let mut tasks = tokio::task::JoinSet::new();
    for (organization_id, name) in due {
        let context = context.clone();
        let settings = settings.clone();
        let deliverers = context.settings.rotation.deliverers_for(&name);
        tasks.spawn(async move {
            rotate_if_due(&context, organization_id, &deliverers, &settings).await
        });
    }
    let (mut advanced, mut failed) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(report)) if report.step == NOT_DUE => {}
            Ok(Ok(report)) => {
                tracing::info!(rotation = %report.rotation_id, step = %report.step, "rotation advanced");
                advanced += 1;
            }
            Ok(Err(error)) if error.is::<RotationBusy>() => tracing::info!("{error}"),
            Ok(Err(error)) => {
                tracing::warn!("rotation failed: {error:#}");
                failed += 1;
            }
            Err(error) => {
                tracing::error!("rotation task failed: {error}");
                failed += 1;
            }
        }
    }
    Ok(format!(
        "advanced {advanced} rotation(s), {failed} failed and will be retried"
    ))
}

/// The fencing check before each call to Microsoft: stop if the lock is no longer ours.
async fn fence(
    lock: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    organization_id: Uuid,
) -> anyhow::Result<()> {
    match store::rotations::still_locked(lock, organization_id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(LockLost(format!(
            "lost the rotation lock of {organization_id}; stopping before calling Microsoft"
        ))
        .into()),
        Err(error) => Err(LockLost(format!(
            "cannot confirm the rotation lock of {organization_id} ({error}); stopping before calling Microsoft"
        ))
        .into()),
    }
}

/// The lock may be someone else's now: their rotation is not ours to mark as failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LockLost(String);
