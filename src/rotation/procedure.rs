//! The journaled rotation of one organization's client secret: a state machine driven by
//! the journal (`rotations.step`), one function per step, each step recorded before the
//! call to Microsoft that follows it, so that a rotation interrupted anywhere resumes where
//! it stopped:
//!
//! intent -> added (addPassword; the secret sealed at once) -> verified (tokens and a Graph
//! call with the new secret, retried while Microsoft propagates it) -> delivered (to every
//! deliverer) -> activated (the new secret becomes current) -> finished (after the grace
//! period, removePassword of the replaced secret, and only it).
//!
//! What makes each step safe to repeat after any fault (issue 9):
//! - The next step is decided only from the journal as read under the organization's lock,
//!   re-read before every step; a step's write is conditional on the step it expects, so a
//!   daemon that stalled or lost its lock changes nothing that moved on without it.
//! - addPassword is never re-sent blindly: when its answer is lost, the application is read
//!   and a secret carrying the rotation's name is removed (it can never be used: its text is
//!   lost) before a new one is added. Secrets with the rotation's name that appear later
//!   (Microsoft's reads lag its writes) are removed when the rotation finishes.
//! - removePassword of a key already gone is success; every removal is journaled
//!   (`removing_key_id`, audited `credential.removing`) before the call.
//! - A database error is not a Microsoft failure: the step is retried within a minute, and
//!   a secret Microsoft created is kept in memory until it is stored.
//!
//! A failed attempt records why (`FailureReason`) and when to try again; the checks turn
//! the reason into an alert that says what to do. The `failpoint` hooks let the tests kill
//! the process right before and right after every step.

use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use uuid::Uuid;

use super::deliver::{Deliverer, Delivery, deliver};

mod certificate;
use crate::context::Context;
use crate::crypto::SealContext;
use crate::domain::RotationStep;
use crate::domain::plan::{self, RotationPolicy};
use crate::failpoint;
use crate::microsoft::graph::{Application, NewPassword};
use crate::microsoft::token::AccessToken;
use crate::microsoft::{
    Endpoints, GraphError, GraphFailure, Removal, Resource, TokenError, TokenFailure,
};
use crate::store::{self, audit::AuditEntry, checks::TargetRow, rotations::RotationRow};
pub use certificate::prepare_ahead;

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
    /// The rotation worked on; none when there was nothing to rotate.
    pub rotation_id: Option<crate::domain::RotationId>,
    pub step: Reached,
    pub new_key_id: Option<Uuid>,
}

/// Where a call to the procedure left the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The step the rotation reached (`Finished` when the old secret is gone).
    Step(RotationStep),
    /// Nothing to do after all: not due, or the open rotation waits for its next attempt.
    NotDue,
    /// The rotation moved on while this process verified it: another kodo-access carries
    /// it on, and this one did nothing more.
    Elsewhere,
}

impl Reached {
    pub fn as_str(self) -> &'static str {
        match self {
            Reached::Step(step) => step.as_str(),
            Reached::NotDue => "not_due",
            Reached::Elsewhere => "elsewhere",
        }
    }

    /// Whether this call moved the rotation on.
    pub fn advanced(self) -> bool {
        matches!(self, Reached::Step(_))
    }
}

impl std::fmt::Display for Reached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Report {
    fn of(rotation: &RotationRow) -> Report {
        Report {
            rotation_id: Some(rotation.id),
            step: Reached::Step(rotation.step),
            new_key_id: rotation.new_key_id,
        }
    }
}

pub use crate::domain::rotation::FailureReason;

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
            | TokenFailure::CertificateRejected
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

/// A Graph refusal judged with the token that was refused: a 403 to a token that carries no
/// application permission at all means consent is gone (the checks' business), not that
/// the rotation permission is missing.
fn graph_failure(error: GraphError, token: &AccessToken) -> Failure {
    if error.kind != GraphFailure::Forbidden {
        return error.into();
    }
    let roles = token.claims.roles();
    let has = |role: &str| roles.iter().any(|granted| granted == role);
    let (reason, why) = if roles.is_empty() {
        (
            FailureReason::AccessLost,
            "the token carries no application permission: admin consent appears revoked",
        )
    } else if has("Application.ReadWrite.All") {
        (
            FailureReason::NotAuthorized,
            "the app holds Application.ReadWrite.All and is still refused",
        )
    } else if has("Application.ReadWrite.OwnedBy") {
        (
            FailureReason::NotAuthorized,
            "the app has Application.ReadWrite.OwnedBy, but its service principal is not an owner of its own application object",
        )
    } else if has("Directory.ReadWrite.All") {
        // Listed by Microsoft's docs, not confirmed to work live (reference §13).
        (
            FailureReason::NotAuthorized,
            "Directory.ReadWrite.All is not enough here: grant Application.ReadWrite.OwnedBy (with the app owning itself) or Application.ReadWrite.All",
        )
    } else {
        (
            FailureReason::NotAuthorized,
            "the app lacks Application.ReadWrite.OwnedBy",
        )
    };
    Failure {
        reason,
        message: format!("{why}: {error}"),
    }
}

/// Failures of the new secret that waiting for Microsoft's propagation may cure.
fn propagating_token(error: &TokenError) -> bool {
    error.kind.is_retryable()
        || matches!(
            error.kind,
            TokenFailure::SecretInvalid | TokenFailure::CertificateRejected
        )
}

fn propagating_graph(error: &GraphError) -> bool {
    error.kind.is_retryable() || error.kind == GraphFailure::Unauthorized
}

const ACTOR: &str = "rotation";

fn display_name(rotation_id: crate::domain::RotationId) -> String {
    format!("kodo-access rotation {rotation_id}")
}

/// The secrets on the application that carry this rotation's name.
fn named(application: &Application, rotation_id: crate::domain::RotationId) -> Vec<Uuid> {
    let name = display_name(rotation_id);
    application
        .password_credentials
        .iter()
        .filter(|credential| credential.display_name.as_deref() == Some(name.as_str()))
        .map(|credential| credential.key_id)
        .collect()
}

/// How often one attempt looks for (and removes) what a lost addPassword answer created,
/// and adds again.
const LOST_ANSWERS_PER_ATTEMPT: u32 = 3;

/// How a call to `rotate`/`rotate_if_due` can fail, for callers that act on it (the job
/// counts failures but not `Busy`; the CLI says what happens next).
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Another kodo-access (or another command) holds this organization's rotation lock.
    #[error("another kodo-access is rotating organization {0} right now")]
    Busy(crate::domain::OrganizationId),
    /// An attempt failed and the failure is in the journal (its reason, the backoff, the
    /// alert the next check raises); the message says which and when the next attempt is.
    #[error("{0}")]
    Recorded(String),
    /// The database stayed away (or the lock went with its connection) longer than one
    /// attempt waits, or the daemon shut down meanwhile: nothing was recorded, and the
    /// rotation resumes at its recorded step.
    #[error("{0:#}")]
    DatabaseUnavailable(anyhow::Error),
    /// Anything else (recording it failed too, or nothing had started to record it in).
    #[error("{0:#}")]
    Unexpected(anyhow::Error),
}

impl RotationError {
    /// As an `anyhow::Error` whose chain still holds the cause's own types (the CLI's exit
    /// status reads an `InputError` there).
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            RotationError::DatabaseUnavailable(error) | RotationError::Unexpected(error) => error,
            other => other.into(),
        }
    }

    /// The one place the internal markers become the caller's variants.
    fn classify(error: anyhow::Error) -> RotationError {
        if let Some(RotationBusy(organization_id)) = error.downcast_ref::<RotationBusy>() {
            return RotationError::Busy(*organization_id);
        }
        match error.downcast::<RecordedFailure>() {
            Ok(RecordedFailure(message)) => RotationError::Recorded(message),
            Err(error) => RotationError::Unexpected(error),
        }
    }
}

/// Another kodo-access (or another command) is rotating this organization right now.
#[derive(Debug, thiserror::Error)]
#[error("another kodo-access is rotating organization {0} right now")]
struct RotationBusy(crate::domain::OrganizationId);

/// A failure already recorded in the rotation's journal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RecordedFailure(String);

/// The lock may be someone else's now: their rotation is not ours to mark as failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LockLost(String);

fn elsewhere(rotation: &RotationRow) -> Report {
    Report {
        step: Reached::Elsewhere,
        ..Report::of(rotation)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The scheduled job: start only if the plan says so, resume only when the wait is over.
    Due,
    /// `kodo-access rotate`: start a rotation if none is open, else resume the open one.
    OnDemand,
    /// Go on with this rotation, and only with it: nothing starts a new one.
    Resume(crate::domain::RotationId),
}

/// What the journal, read under the lock, says to do.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    Continue,
    Begin,
    /// Nothing to do now (not due, backing off, claimed by a verifier, or moved on).
    Stop,
    NoSecret,
}

/// The decision that opens every locked stretch: pure, from the journal and the plan.
fn start(
    trigger: Trigger,
    open: Option<&RotationRow>,
    due_by_plan: bool,
    has_secret: bool,
    now: chrono::DateTime<Utc>,
) -> Start {
    match (trigger, open) {
        (Trigger::Resume(id), Some(open)) if open.id == id => Start::Continue,
        (Trigger::Resume(_), _) => Start::Stop,
        (Trigger::Due, Some(open)) if open.next_attempt_at > now => Start::Stop,
        (_, Some(_)) => Start::Continue,
        (Trigger::Due, None) if !due_by_plan => Start::Stop,
        (_, None) if !has_secret => Start::NoSecret,
        (_, None) => Start::Begin,
    }
}

/// Starts a rotation if none is open, else resumes the open one, and drives it as far as it
/// can go now. Every step that changes something (the intent, addPassword, delivery,
/// activation, removePassword) runs holding the organization's rotation lock in
/// PostgreSQL: at most one rotation of an organization runs at a time across all daemons,
/// and a daemon that dies releases it with its connection. Verification, which only reads
/// and may wait minutes for Microsoft's propagation, runs without the lock, so that a
/// thousand rotations can wait at once without a thousand database connections.
pub async fn rotate(
    context: &Context,
    organization_id: crate::domain::OrganizationId,
    deliverers: &[Deliverer],
    settings: &RotationSettings,
) -> Result<Report, RotationError> {
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
    organization_id: crate::domain::OrganizationId,
    deliverers: &[Deliverer],
    settings: &RotationSettings,
) -> Result<Report, RotationError> {
    rotate_with(context, organization_id, deliverers, settings, Trigger::Due).await
}

/// How far one locked stretch got.
enum Progress {
    Done(Report),
    /// At `added`: verify without the lock, then go on with this rotation.
    Verify(crate::domain::RotationId),
}

#[tracing::instrument(name = "rotation", skip_all, fields(organization = %organization_id))]
async fn rotate_with(
    context: &Context,
    organization_id: crate::domain::OrganizationId,
    deliverers: &[Deliverer],
    settings: &RotationSettings,
    trigger: Trigger,
) -> Result<Report, RotationError> {
    let mut trigger = trigger;
    // The rotation this call works on, once known: after any interruption it goes on with
    // that one only.
    let mut rotation_id = None;
    let mut outage = DatabaseOutage::default();
    loop {
        let attempt = async {
            match drive(
                context,
                organization_id,
                deliverers,
                settings,
                trigger,
                &mut rotation_id,
            )
            .await?
            {
                Progress::Done(report) => Ok(Some(report)),
                Progress::Verify(id) => verify(context, organization_id, id, settings).await,
            }
        }
        .await;
        if let Some(id) = rotation_id {
            trigger = Trigger::Resume(id);
        }
        match attempt {
            Ok(Some(report)) => return Ok(report),
            Ok(None) => continue, // verified: on to delivery
            Err(error) if error.is::<RotationBusy>() || error.is::<RecordedFailure>() => {
                return Err(RotationError::classify(error));
            }
            Err(error) if is_database_trouble(&error) || error.is::<LockLost>() => {
                match outage.next_wait() {
                    Some(wait) => {
                        outage.log_once(organization_id, &error, wait);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = context.shutdown.cancelled() => return Err(RotationError::DatabaseUnavailable(error)),
                        }
                    }
                    // Nothing recorded: the journal is where it was, and the next pass
                    // resumes it there.
                    None => {
                        return Err(RotationError::DatabaseUnavailable(error.context(
                            "the database stayed unavailable: the rotation resumes at its recorded step when it is back",
                        )));
                    }
                }
            }
            // A secret that does not open, a broken row: recorded like any failure
            // (backoff, alert) when a rotation is under way.
            Err(error) => {
                return Err(RotationError::classify(
                    record_unexpected(context, organization_id, rotation_id, error).await,
                ));
            }
        }
    }
}

/// Database trouble (the server away, restarting, refusing connections, the pool dry) as
/// opposed to an answer from it: retried in seconds, never taken for a Microsoft failure.
fn is_database_trouble(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .any(transient_database_error)
}

fn transient_database_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions, server shutting down or starting, too many connections.
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// The bounded wait for the database during one rotation call: about a minute in all.
#[derive(Default)]
struct DatabaseOutage {
    waits: usize,
}

const DATABASE_WAITS: [u64; 7] = [1, 2, 4, 8, 15, 15, 15];

impl DatabaseOutage {
    fn next_wait(&mut self) -> Option<Duration> {
        let wait = DATABASE_WAITS.get(self.waits).copied()?;
        self.waits += 1;
        Some(Duration::from_secs(wait))
    }

    /// One line per outage, not one per retry nor one per rotation: at most one a minute
    /// across every rotation of the process.
    fn log_once(
        &self,
        organization_id: crate::domain::OrganizationId,
        error: &anyhow::Error,
        wait: Duration,
    ) {
        use std::sync::atomic::{AtomicI64, Ordering};
        static LAST_SAID: AtomicI64 = AtomicI64::new(0);
        let now = Utc::now().timestamp();
        let last = LAST_SAID.load(Ordering::Relaxed);
        let first_of_outage = now - last >= 60
            && LAST_SAID
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if first_of_outage {
            tracing::warn!(organization_id = %organization_id, "rotation interrupted by the database ({error:#}); rotations retry within a minute, first in {}s", wait.as_secs());
        } else {
            tracing::debug!(organization_id = %organization_id, "rotation waits for the database ({error:#}); again in {}s", wait.as_secs());
        }
    }
}

async fn record_unexpected(
    context: &Context,
    organization_id: crate::domain::OrganizationId,
    rotation_id: Option<crate::domain::RotationId>,
    error: anyhow::Error,
) -> anyhow::Error {
    let Some(rotation_id) = rotation_id else {
        return error; // nothing started: nothing to record it in
    };
    let open = async {
        let mut connection = context.pool.acquire().await?;
        store::rotations::by_id(&mut connection, rotation_id).await
    };
    match open.await {
        Ok(rotation) if rotation.finished_at.is_none() => {
            record_failure(
                context,
                &rotation,
                &organization_id.to_string(),
                None,
                Failure {
                    reason: FailureReason::Failed,
                    message: format!("{error:#}"),
                },
            )
            .await
        }
        _ => error,
    }
}

/// Records a failed attempt (why, and when to try again) and returns the error to report.
/// With `at_step`, only while the rotation is still there.
async fn record_failure(
    context: &Context,
    rotation: &RotationRow,
    organization: &str,
    at_step: Option<RotationStep>,
    failure: Failure,
) -> anyhow::Error {
    let failures = u32::try_from(rotation.attempts).unwrap_or(0) + 1;
    let next = Utc::now()
        + match failure.reason {
            FailureReason::MicrosoftUnavailable => plan::transient_backoff(failures),
            _ => plan::backoff(failures),
        };
    let recorded = async {
        let mut connection = context.pool.acquire().await?;
        store::rotations::failed(
            &mut connection,
            rotation.id,
            at_step,
            failure.reason.as_str(),
            &failure.message,
            next,
        )
        .await?;
        // The check turns the failure into its alert now, not at its next turn.
        store::checks::check_soon(&mut connection, rotation.organization_id).await?;
        Ok::<(), sqlx::Error>(())
    };
    let rotation_id = rotation.id;
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

/// One locked stretch: takes the organization's lock, then steps while steps can be taken.
async fn drive(
    context: &Context,
    organization_id: crate::domain::OrganizationId,
    deliverers: &[Deliverer],
    settings: &RotationSettings,
    trigger: Trigger,
    rotation_id: &mut Option<crate::domain::RotationId>,
) -> anyhow::Result<Progress> {
    // Each locked stretch holds two connections (the lock's and the work's); the slots keep
    // the pool from running dry, whatever the number of rotations under way.
    let _slot = context.rotation_slots.acquire().await?;
    let mut lock = context.pool.acquire().await?;
    if !store::rotations::try_lock(&mut lock, organization_id).await? {
        return Err(RotationBusy(organization_id).into());
    }
    let result = async {
        let organization = {
            let mut connection = context.pool.acquire().await?;
            store::checks::targets(&mut connection, &[organization_id])
                .await?
                .pop()
                .ok_or_else(|| anyhow::anyhow!("no organization {organization_id}"))?
        };
        let endpoints =
            crate::target::endpoints(context, &organization).map_err(anyhow::Error::msg)?;
        let mut run = Locked {
            context,
            lock: &mut lock,
            organization_id,
            organization,
            endpoints,
            deliverers,
            settings,
        };
        run.steps(trigger, rotation_id).await
    }
    .await;
    match store::rotations::unlock(&mut lock, organization_id).await {
        Ok(true) => {}
        // Never hand a connection that may still hold the lock back to the pool.
        _ => drop(lock.detach()),
    }
    result
}

/// What a step leaves for the next: read the journal again, or stop for now.
enum Next {
    Again,
    Wait,
}

/// A rotation's locked stretch: the lock, the organization as read at its start, and the
/// steps, each a function of the journal row read under the lock.
struct Locked<'a> {
    context: &'a Context,
    lock: &'a mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    organization_id: crate::domain::OrganizationId,
    organization: TargetRow,
    endpoints: Endpoints,
    deliverers: &'a [Deliverer],
    settings: &'a RotationSettings,
}

impl Locked<'_> {
    async fn steps(
        &mut self,
        mut trigger: Trigger,
        rotation_id: &mut Option<crate::domain::RotationId>,
    ) -> anyhow::Result<Progress> {
        loop {
            let rotation = match self.journal(trigger).await? {
                Ok(rotation) => rotation,
                Err(report) => return Ok(Progress::Done(report)),
            };
            *rotation_id = Some(rotation.id);
            trigger = Trigger::Resume(rotation.id);
            let next = match rotation.step {
                RotationStep::Intent => self.add(&rotation).await?,
                RotationStep::Added => return Ok(Progress::Verify(rotation.id)),
                RotationStep::Verified => self.deliver(&rotation).await?,
                RotationStep::Delivered => self.activate(&rotation).await?,
                RotationStep::Activated => self.finish(&rotation).await?,
                RotationStep::Finished => return Ok(Progress::Done(Report::of(&rotation))),
            };
            if let Next::Wait = next {
                return Ok(Progress::Done(Report::of(&self.reread(rotation.id).await?)));
            }
        }
    }

    /// The rotation to work on, read now, under the lock; or the report of why there is
    /// none (not due, moved on, finished).
    async fn journal(&mut self, trigger: Trigger) -> anyhow::Result<Result<RotationRow, Report>> {
        let open = {
            let mut connection = self.context.pool.acquire().await?;
            store::rotations::open(&mut connection, self.organization_id).await?
        };
        let row = &self.organization;
        let due_by_plan = row.settings.0.moves_to_certificate(row.credential_kind)
            || row.end_at.is_some_and(|end| {
                let policy = self.settings.policy.for_organization(&row.settings.0);
                plan::decide(&policy, row.start_at, end, 0, None, Utc::now())
                    == plan::Decision::Rotate
            });
        match start(
            trigger,
            open.as_ref(),
            due_by_plan,
            row.credential_id.is_some(),
            Utc::now(),
        ) {
            Start::Continue => Ok(Ok(open.expect("an open rotation"))),
            Start::Begin => Ok(Ok(self.begin().await?)),
            Start::Stop => Ok(Err(match (trigger, open) {
                (Trigger::Resume(id), _) => Report::of(&self.reread(id).await?),
                (_, Some(open)) => Report {
                    step: Reached::NotDue,
                    ..Report::of(&open)
                },
                (_, None) => Report {
                    rotation_id: None,
                    step: Reached::NotDue,
                    new_key_id: None,
                },
            })),
            // Nothing to rotate, and a rotation started from nothing could never finish.
            Start::NoSecret => Err(crate::domain::input_error(format!(
                "{} has no current secret to rotate: store one with kodo-access org set-secret",
                row.name
            ))
            .into()),
        }
    }

    async fn reread(&self, rotation_id: crate::domain::RotationId) -> anyhow::Result<RotationRow> {
        let mut connection = self.context.pool.acquire().await?;
        Ok(store::rotations::by_id(&mut connection, rotation_id).await?)
    }

    fn audit<'e>(
        &'e self,
        rotation_id: crate::domain::RotationId,
        action: &'static str,
        credential_id: Option<crate::domain::CredentialId>,
        key_id: Option<Uuid>,
    ) -> AuditEntry<'e> {
        AuditEntry {
            actor: ACTOR,
            action,
            organization_id: Some(self.organization_id),
            organization_name: Some(&self.organization.name),
            credential_id,
            key_id,
            rotation_id: Some(rotation_id),
            ..Default::default()
        }
    }

    /// Records the failure of this step (only while the rotation is still at it).
    async fn fail<T>(&self, rotation: &RotationRow, failure: Failure) -> anyhow::Result<T> {
        Err(record_failure(
            self.context,
            rotation,
            &self.organization.name,
            Some(rotation.step),
            failure,
        )
        .await)
    }

    /// The fencing check before each call to Microsoft: stop if the lock is no longer ours.
    async fn fence(&mut self) -> anyhow::Result<()> {
        let organization_id = self.organization_id;
        match store::rotations::still_locked(self.lock, organization_id).await {
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

    fn open_secret(
        &self,
        credential: &store::rotations::CredentialRef,
    ) -> anyhow::Result<SecretString> {
        open_credential(self.context, self.organization_id, credential)
    }

    async fn credential(
        &self,
        id: Option<crate::domain::CredentialId>,
    ) -> anyhow::Result<store::rotations::CredentialRef> {
        let id = id.ok_or_else(|| anyhow::anyhow!("the rotation has no such secret"))?;
        let mut connection = self.context.pool.acquire().await?;
        Ok(store::rotations::credential(&mut connection, id).await?)
    }

    async fn graph_token<C: crate::microsoft::token::AsCredential + ?Sized>(
        &self,
        rotation: &RotationRow,
        secret: &C,
    ) -> anyhow::Result<AccessToken> {
        match self
            .context
            .microsoft
            .token(&self.endpoints, secret, Resource::Graph)
            .await
        {
            Ok(token) => Ok(token),
            Err(error) => self.fail(rotation, error.into()).await,
        }
    }

    async fn application(
        &self,
        rotation: &RotationRow,
        token: &AccessToken,
    ) -> anyhow::Result<Application> {
        match self
            .context
            .microsoft
            .get_application(&self.endpoints, token)
            .await
        {
            Ok(application) => Ok(application),
            Err(error) => self.fail(rotation, graph_failure(error, token)).await,
        }
    }

    /// Records the intent to rotate, before anything is asked of Microsoft.
    async fn begin(&mut self) -> anyhow::Result<RotationRow> {
        failpoint::hit("rotation-before-intent").await;
        let row = &self.organization;
        let mut transaction = self.context.pool.begin().await?;
        let rotation = store::rotations::begin(
            &mut transaction,
            crate::domain::RotationId::new(),
            self.organization_id,
            row.credential_id,
            "due",
        )
        .await?;
        let entry = self.audit(
            rotation.id,
            "rotation.started",
            row.credential_id,
            row.key_id,
        );
        store::audit::record(&mut transaction, entry).await?;
        transaction.commit().await?;
        failpoint::hit("rotation-after-intent").await;
        Ok(rotation)
    }

    /// Removes a secret at Microsoft, journaled first (`removing_key_id`, audited as
    /// `credential.removing`) and, for a leftover of this rotation, recorded after. False
    /// when the rotation moved on before the call (nothing was removed).
    async fn remove_leftover(
        &mut self,
        rotation: &RotationRow,
        token: &AccessToken,
        key_id: Uuid,
    ) -> anyhow::Result<bool> {
        if !self.journal_removal(rotation, key_id, "leftover").await? {
            return Ok(false);
        }
        self.fence().await?;
        let removal = match self
            .context
            .microsoft
            .remove_password(&self.endpoints, token, key_id)
            .await
        {
            Ok(removal) => removal,
            Err(error) => {
                let mut failure = graph_failure(error, token);
                failure.message = format!(
                    "removing the secret {key_id} a lost answer left: {}",
                    failure.message
                );
                return self.fail(rotation, failure).await;
            }
        };
        let mut transaction = self.context.pool.begin().await?;
        store::rotations::removed(&mut transaction, rotation.id).await?;
        let mut entry = self.audit(rotation.id, "credential.orphan_removed", None, Some(key_id));
        entry.details = serde_json::json!({
            "why": "created by this rotation for an answer that never arrived: its text is lost",
            "already_gone": removal == Removal::AlreadyGone,
        });
        store::audit::record(&mut transaction, entry).await?;
        transaction.commit().await?;
        tracing::warn!(organization = %self.organization.name, rotation = %rotation.id, key_id = %key_id, "removed a secret whose answer was lost");
        Ok(true)
    }

    /// A leftover's removal journaled by an earlier attempt whose answer was lost: Microsoft
    /// may have removed it already, so a read no longer shows it and the sweep by name
    /// would never record it. It is sent again (removePassword of a key already gone is
    /// success) and recorded. The replaced secret (`old_key`) and the new one are not
    /// leftovers: their removal is the finish step's own. False when the rotation moved on.
    async fn complete_journaled_leftover(
        &mut self,
        rotation: &RotationRow,
        token: &AccessToken,
        old_key: Option<Uuid>,
    ) -> anyhow::Result<bool> {
        match rotation.removing_key_id {
            Some(key_id) if Some(key_id) != old_key && Some(key_id) != rotation.new_key_id => {
                self.remove_leftover(rotation, token, key_id).await
            }
            _ => Ok(true),
        }
    }

    /// The write-ahead record of a removal: journaled and audited before the call.
    async fn journal_removal(
        &self,
        rotation: &RotationRow,
        key_id: Uuid,
        what: &str,
    ) -> anyhow::Result<bool> {
        let mut transaction = self.context.pool.begin().await?;
        if !store::rotations::removing(&mut transaction, rotation.id, rotation.step, key_id).await?
        {
            return Ok(false);
        }
        let mut entry = self.audit(rotation.id, "credential.removing", None, Some(key_id));
        entry.details = serde_json::json!({ "what": what });
        store::audit::record(&mut transaction, entry).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// `intent` -> `added`: addPassword, then the secret sealed and stored before anything
    /// else. Never re-sent blindly: after an answer that does not prove nothing happened,
    /// the application is read and what the lost answer created is removed first.
    async fn add(&mut self, rotation: &RotationRow) -> anyhow::Result<Next> {
        let old = self.credential(rotation.old_credential_id).await?;
        // The journal decides first: a certificate already prepared is carried on even if
        // the settings changed since.
        if rotation.new_credential_id.is_some()
            || old.kind == crate::domain::CredentialKind::Certificate
            || self
                .organization
                .settings
                .0
                .moves_to_certificate(Some(old.kind))
        {
            return self.add_certificate(rotation, &old).await;
        }
        let current = self.open_secret(&old)?;
        let token = self.graph_token(rotation, &current).await?;
        // A secret with this rotation's name was created by an attempt whose answer was lost
        // or that died before storing it: nobody can ever use it.
        if !self
            .complete_journaled_leftover(rotation, &token, old.key_id)
            .await?
        {
            return Ok(Next::Again);
        }
        let application = self.application(rotation, &token).await?;
        for key_id in named(&application, rotation.id) {
            if !self.remove_leftover(rotation, &token, key_id).await? {
                return Ok(Next::Again);
            }
        }
        // The configured lifetime, then shorter ones while the tenant's policy refuses.
        let limit = self
            .organization
            .secret_lifetime_limit_days
            .map(|days| chrono::Duration::days(days.into()));
        let ladder = plan::lifetime_ladder(&self.settings.policy, limit);
        let (mut index, mut lost) = (0, 0);
        while let Some(lifetime) = ladder.get(index) {
            let end = Utc::now() + *lifetime;
            self.fence().await?;
            failpoint::hit("rotation-before-added").await;
            match self
                .context
                .microsoft
                .add_password(&self.endpoints, &token, &display_name(rotation.id), end)
                .await
            {
                Ok(created) => {
                    if index > 0 {
                        self.learn_lifetime(rotation, ladder[0], *lifetime).await?;
                    }
                    failpoint::hit("rotation-after-added").await;
                    return self.store_added(rotation, created).await;
                }
                Err(error)
                    if error.kind == GraphFailure::LifetimeTooLong && index + 1 < ladder.len() =>
                {
                    tracing::info!(organization = %self.organization.name, rotation = %rotation.id, "the tenant's policy refused {} days; trying shorter", lifetime.num_days());
                    index += 1;
                }
                Err(error) if error.may_have_acted() && lost < LOST_ANSWERS_PER_ATTEMPT => {
                    lost += 1;
                    tracing::warn!(organization = %self.organization.name, rotation = %rotation.id, "addPassword's answer was lost ({error}): looking for the secret it may have created");
                    let application = self.application(rotation, &token).await?;
                    for key_id in named(&application, rotation.id) {
                        if !self.remove_leftover(rotation, &token, key_id).await? {
                            return Ok(Next::Again);
                        }
                    }
                }
                Err(error) => return self.fail(rotation, graph_failure(error, &token)).await,
            }
        }
        Err(anyhow::anyhow!("no lifetime to try"))
    }

    async fn learn_lifetime(
        &self,
        rotation: &RotationRow,
        asked: chrono::Duration,
        accepted: chrono::Duration,
    ) -> anyhow::Result<()> {
        let mut connection = self.context.pool.acquire().await?;
        store::rotations::learn_lifetime_limit(
            &mut connection,
            self.organization_id,
            accepted.num_days(),
        )
        .await?;
        let mut entry = self.audit(rotation.id, "rotation.lifetime_limited", None, None);
        entry.details = serde_json::json!({
            "asked_days": asked.num_days(),
            "accepted_days": accepted.num_days(),
            "why": "the tenant's app-management policy refused a longer lifetime",
        });
        store::audit::record(&mut connection, entry).await?;
        tracing::warn!(organization = %self.organization.name, rotation = %rotation.id, "the tenant's policy limits credential lifetimes: asked {} days, got {}", asked.num_days(), accepted.num_days());
        Ok(())
    }

    /// Stores what addPassword created. Its text exists only here, so a database outage is
    /// waited out (about a minute) rather than losing it; the write is conditional on the
    /// journal, so a secret another daemon has meanwhile journaled for removal is not
    /// adopted.
    async fn store_added(
        &mut self,
        rotation: &RotationRow,
        created: NewPassword,
    ) -> anyhow::Result<Next> {
        let credential_id = crate::domain::CredentialId::new();
        let sealed = self.context.keyring.seal(
            &created.secret_text,
            SealContext {
                organization_id: self.organization_id,
                credential_id,
            },
        );
        let mut outage = DatabaseOutage::default();
        loop {
            let stored = async {
                let mut transaction = self.context.pool.begin().await?;
                let stored = store::rotations::added(
                    &mut transaction,
                    store::rotations::NewSecret {
                        rotation_id: rotation.id,
                        credential_id,
                        organization_id: self.organization_id,
                        key_id: created.key_id,
                        hint: created.hint.as_deref(),
                        display_name: created.display_name.as_deref(),
                        start_at: created.start_date_time,
                        end_at: created.end_date_time,
                        sealed: &sealed,
                    },
                )
                .await?;
                if stored {
                    let entry = self.audit(
                        rotation.id,
                        "credential.added",
                        Some(credential_id),
                        Some(created.key_id),
                    );
                    store::audit::record(&mut transaction, entry).await?;
                    // A failure this attempt got past clears from the status at once.
                    store::checks::check_soon(&mut transaction, self.organization_id).await?;
                }
                transaction.commit().await?;
                Ok::<bool, sqlx::Error>(stored)
            }
            .await;
            match stored {
                Ok(true) => return Ok(Next::Again),
                Ok(false) => {
                    // Moved on without it: it carries the rotation's name, so whoever goes on
                    // removes it.
                    tracing::warn!(organization = %self.organization.name, rotation = %rotation.id, key_id = %created.key_id, "the rotation moved on while its new secret was being stored; it will be removed as a leftover");
                    return Ok(Next::Again);
                }
                Err(error) if transient_database_error(&error) => match outage.next_wait() {
                    Some(wait) => {
                        let error = anyhow::Error::from(error);
                        outage.log_once(self.organization_id, &error, wait);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            // Left on the app with the rotation's name: removed as a leftover.
                            _ = self.context.shutdown.cancelled() => return Err(error),
                        }
                    }
                    None => return Err(error.into()),
                },
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// `verified` -> `delivered`: every deliverer has the new secret before it becomes
    /// current.
    async fn deliver(&mut self, rotation: &RotationRow) -> anyhow::Result<Next> {
        let new = self.credential(rotation.new_credential_id).await?;
        let secret = self.open_secret(&new)?;
        // A certificate goes with its PEM and thumbprint; never its key as a secret.
        let certificate = match (new.kind, &new.certificate, &new.thumbprint) {
            (crate::domain::CredentialKind::Secret, _, _) => None,
            (_, Some(der), Some(thumbprint)) => Some((
                crate::microsoft::certificate::pem_of(der),
                thumbprint.as_str(),
            )),
            _ => anyhow::bail!(
                "credential {} is a certificate without its certificate",
                new.id
            ),
        };
        self.fence().await?;
        let delivery = Delivery {
            organization: &self.organization.name,
            tenant_id: self.organization.tenant_id,
            client_id: self.organization.client_id,
            key_id: rotation.new_key_id,
            expires_at: new.end_at,
            secret: &secret,
            certificate: certificate
                .as_ref()
                .map(|(pem, thumbprint)| (pem.as_str(), *thumbprint)),
        };
        failpoint::hit("rotation-before-delivered").await;
        for deliverer in self.deliverers {
            if let Err(error) = deliver(&self.context.http, deliverer, &delivery).await {
                let failure = Failure {
                    reason: FailureReason::DeliveryFailed,
                    message: format!("delivery to {} failed: {error}", deliverer.describe()),
                };
                return self.fail(rotation, failure).await;
            }
        }
        failpoint::hit("rotation-after-delivered").await;
        let mut transaction = self.context.pool.begin().await?;
        if store::rotations::advance(
            &mut transaction,
            rotation.id,
            RotationStep::Verified,
            RotationStep::Delivered,
        )
        .await?
        {
            let entry = self.audit(
                rotation.id,
                "credential.delivered",
                Some(new.id),
                rotation.new_key_id,
            );
            store::audit::record(&mut transaction, entry).await?;
        }
        transaction.commit().await?;
        Ok(Next::Again)
    }

    /// `delivered` -> `activated`: the new secret becomes current.
    async fn activate(&mut self, rotation: &RotationRow) -> anyhow::Result<Next> {
        let new_credential_id = rotation
            .new_credential_id
            .ok_or_else(|| anyhow::anyhow!("rotation {} has no new secret", rotation.id))?;
        failpoint::hit("rotation-before-activated").await;
        let mut transaction = self.context.pool.begin().await?;
        let activated = store::rotations::activate(
            &mut transaction,
            rotation.id,
            self.organization_id,
            new_credential_id,
            self.settings.grace,
        )
        .await?;
        if !activated {
            return Ok(Next::Again);
        }
        let entry = self.audit(
            rotation.id,
            "credential.activated",
            Some(new_credential_id),
            rotation.new_key_id,
        );
        store::audit::record(&mut transaction, entry).await?;
        // The next check looks at the new secret (and resolves any rotation alert).
        store::checks::check_soon(&mut transaction, self.organization_id).await?;
        transaction.commit().await?;
        failpoint::hit("rotation-after-activated").await;
        crate::telemetry::metrics::rotation_activated(
            (Utc::now() - rotation.created_at)
                .to_std()
                .unwrap_or_default(),
        );
        tracing::info!(organization = %self.organization.name, rotation = %rotation.id, key_id = ?rotation.new_key_id, "the new secret is current");
        Ok(Next::Again)
    }

    /// `activated` -> `finished`: after the grace period, the replaced secret (and only it)
    /// is removed, with any secret of this rotation's name that is not its new one.
    async fn finish(&mut self, rotation: &RotationRow) -> anyhow::Result<Next> {
        let new = self.credential(rotation.new_credential_id).await?;
        let activated_at = new.activated_at.unwrap_or_else(Utc::now);
        let grace = chrono::Duration::from_std(self.settings.grace).unwrap_or_default();
        if activated_at + grace > Utc::now() {
            return Ok(Next::Wait);
        }
        let new_credential = certificate::credential_of(self.context, self.organization_id, &new)?;
        let token = self.graph_token(rotation, &new_credential).await?;
        let old = match rotation.old_credential_id {
            Some(id) => Some(self.credential(Some(id)).await?),
            None => None,
        };
        let old_key = old.as_ref().and_then(|old| old.key_id);
        if !self
            .complete_journaled_leftover(rotation, &token, old_key)
            .await?
        {
            return Ok(Next::Again);
        }
        let application = self.application(rotation, &token).await?;
        for key_id in named(&application, rotation.id) {
            if Some(key_id) != rotation.new_key_id
                && !self.remove_leftover(rotation, &token, key_id).await?
            {
                return Ok(Next::Again);
            }
        }
        let mut removed = None;
        let old_is_certificate = old
            .as_ref()
            .is_some_and(|old| old.kind == crate::domain::CredentialKind::Certificate);
        // A secret replaced by a certificate stays unless the operator asked for its removal
        // (something besides the backup server may still sign in with it).
        let kept = !old_is_certificate
            && new.kind == crate::domain::CredentialKind::Certificate
            && self.organization.settings.0.remove_secret_after_grace != Some(true);
        // A certificate's keyId, when no check learned it yet, is read off the app by its
        // thumbprint (a secret's hint is not unique enough to remove by).
        let old_key_id = old.as_ref().and_then(|old| {
            old.key_id.or_else(|| {
                let thumbprint = old.thumbprint.as_deref()?;
                application
                    .key_credentials
                    .iter()
                    .find(|key| key.thumbprint().as_deref() == Some(thumbprint))
                    .map(|key| key.key_id)
            })
        });
        if let Some(old_key_id) = old_key_id.filter(|_| !kept) {
            let on_app = if old_is_certificate {
                application
                    .key_credentials
                    .iter()
                    .any(|credential| credential.key_id == old_key_id)
            } else {
                application
                    .password_credentials
                    .iter()
                    .any(|credential| credential.key_id == old_key_id)
            };
            let mut gone = !on_app;
            if on_app {
                if !self
                    .journal_removal(rotation, old_key_id, "replaced")
                    .await?
                {
                    return Ok(Next::Again);
                }
                self.fence().await?;
                failpoint::hit("rotation-before-removed").await;
                if old_is_certificate {
                    match self
                        .remove_certificate(&token, &application, &new_credential, old_key_id)
                        .await
                    {
                        Ok(already_gone) => gone = already_gone,
                        Err(failure) => return self.fail(rotation, failure).await,
                    }
                } else {
                    match self
                        .context
                        .microsoft
                        .remove_password(&self.endpoints, &token, old_key_id)
                        .await
                    {
                        Ok(removal) => gone = removal == Removal::AlreadyGone,
                        Err(error) => {
                            return self.fail(rotation, graph_failure(error, &token)).await;
                        }
                    }
                }
                failpoint::hit("rotation-after-removed").await;
            }
            removed = Some((old_key_id, gone));
        }
        let mut transaction = self.context.pool.begin().await?;
        match (&old, removed) {
            (Some(old), Some((old_key_id, already_gone))) => {
                store::rotations::mark_removed(&mut transaction, old.id).await?;
                let mut entry = self.audit(
                    rotation.id,
                    "credential.removed",
                    Some(old.id),
                    Some(old_key_id),
                );
                if already_gone {
                    entry.details = serde_json::json!({ "already_gone": true });
                }
                store::audit::record(&mut transaction, entry).await?;
            }
            (Some(old), None) if kept => {
                let mut entry =
                    self.audit(rotation.id, "credential.kept", Some(old.id), old.key_id);
                entry.details = serde_json::json!({ "reason": "a secret replaced by a certificate is kept unless asked (org set ORG --remove-secret-after-grace on)" });
                store::audit::record(&mut transaction, entry).await?;
            }
            (Some(old), None) => {
                // Never learned Microsoft's id of the old secret: leave it, say so.
                let mut entry =
                    self.audit(rotation.id, "credential.not_removed", Some(old.id), None);
                entry.details = serde_json::json!({ "reason": "its keyId was never learned; remove it in the portal" });
                store::audit::record(&mut transaction, entry).await?;
            }
            (None, _) => {}
        }
        // The removal and the end of the rotation commit together: a crash between them
        // would otherwise remove (and audit) the old secret twice.
        if !store::rotations::finish(
            &mut transaction,
            rotation.id,
            RotationStep::Activated,
            "succeeded",
        )
        .await?
        {
            return Ok(Next::Again); // finished by someone else meanwhile: nothing recorded
        }
        transaction.commit().await?;
        crate::telemetry::metrics::rotation_finished();
        Ok(Next::Again)
    }
}

fn open_credential(
    context: &Context,
    organization_id: crate::domain::OrganizationId,
    credential: &store::rotations::CredentialRef,
) -> anyhow::Result<SecretString> {
    context
        .open_secret(
            organization_id,
            credential.id,
            &credential.secret_key_id,
            &credential.secret_sealed,
        )
        .map_err(anyhow::Error::msg)
}

/// The `verified` step: the new secret gets a token for every resource the organization is
/// checked on and reads Graph, however long propagation takes (up to the limit). Runs
/// without the rotation lock: it changes nothing at Microsoft. While it waits, the rotation
/// is claimed (its next attempt put off) so that other daemons leave it alone; the step is
/// recorded only if the rotation is still at `added`. `None` when verified (go on with this
/// rotation); a report when it moved on meanwhile (stop: another daemon has it).
async fn verify(
    context: &Context,
    organization_id: crate::domain::OrganizationId,
    rotation_id: crate::domain::RotationId,
    settings: &RotationSettings,
) -> anyhow::Result<Option<Report>> {
    let claim = settings.verify_timeout + Duration::from_secs(5);
    let (rotation, row, new_credential) = {
        let mut connection = context.pool.acquire().await?;
        let claimed =
            store::rotations::claim_for_verification(&mut connection, rotation_id, claim).await?;
        let rotation = store::rotations::by_id(&mut connection, rotation_id).await?;
        if !claimed {
            return Ok(Some(elsewhere(&rotation))); // moved on meanwhile
        }
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
    let endpoints = crate::target::endpoints(context, &row).map_err(anyhow::Error::msg)?;
    let new_secret = certificate::credential_of(context, organization_id, &new_credential)?;
    failpoint::hit("rotation-before-verified").await;
    let resources = crate::target::resources_that_apply(context, &row, &endpoints);
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(500);
    let give_up = |message: String| Failure {
        reason: FailureReason::NotVerified,
        message,
    };
    loop {
        let attempt = async {
            for resource in &resources {
                let token = context
                    .microsoft
                    .token(&endpoints, &new_secret, *resource)
                    .await
                    .map_err(|error| (propagating_token(&error), error.to_string()))?;
                if *resource == Resource::Graph {
                    context
                        .microsoft
                        .get_application(&endpoints, &token)
                        .await
                        .map_err(|error| (propagating_graph(&error), error.to_string()))?;
                }
            }
            Ok::<(), (bool, String)>(())
        };
        let failure = match attempt.await {
            Ok(()) => break,
            // Waiting does not change this one: say so now, not after the limit.
            Err((false, message)) => {
                give_up(format!("the new secret cannot be verified: {message}"))
            }
            Err((true, message)) if started.elapsed() + wait > settings.verify_timeout => {
                give_up(format!(
                    "the new secret still does not work after {}s: {message}",
                    settings.verify_timeout.as_secs()
                ))
            }
            Err((true, message)) => {
                tracing::info!(organization = %row.name, rotation = %rotation_id, "new secret not accepted yet: {message}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = context.shutdown.cancelled() => anyhow::bail!("shutting down while verifying rotation {rotation_id}"),
                }
                wait = (wait * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // Not if another daemon verified and went on meanwhile.
        return Err(record_failure(
            context,
            &rotation,
            &row.name,
            Some(RotationStep::Added),
            failure,
        )
        .await);
    }
    failpoint::hit("rotation-after-verified").await;
    let mut transaction = context.pool.begin().await?;
    let advanced = store::rotations::advance(
        &mut transaction,
        rotation_id,
        RotationStep::Added,
        RotationStep::Verified,
    )
    .await?;
    if advanced {
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
    if !advanced {
        // Someone else verified (or failed) it while we waited: theirs to go on with.
        let mut connection = context.pool.acquire().await?;
        let rotation = store::rotations::by_id(&mut connection, rotation_id).await?;
        return Ok(Some(elsewhere(&rotation)));
    }
    Ok(None)
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
/// At most this many certificates are made ahead at each pickup (one key pair at a time).
const PREPARED_PER_PICKUP: usize = 20;

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
    // Certificates of rotations due soon are made now, a few per pickup, so that their
    // rotations do not wait for key generation.
    if !config.prepare_ahead.is_zero() {
        let horizon = chrono::Duration::from_std(config.prepare_ahead).unwrap_or_default();
        match certificate::prepare_ahead(context, &candidates, horizon, PREPARED_PER_PICKUP, false)
            .await
        {
            Ok(0) => {}
            Ok(made) => tracing::info!("made {made} certificate(s) ahead of their rotations"),
            Err(error) => tracing::warn!("making certificates ahead failed: {error:#}"),
        }
    }
    let now = Utc::now();
    let due: Vec<(crate::domain::OrganizationId, String)> = candidates
        .into_iter()
        .filter(|candidate| {
            crate::target::rotation_status(
                config,
                &crate::target::RotationFacts {
                    name: &candidate.name,
                    settings: &candidate.settings.0,
                    secret_start: candidate.start_at,
                    secret_end: candidate.end_at,
                    next_attempt: None,
                },
            )
            .is_on()
        })
        .filter(|candidate| {
            match (
                candidate.open_rotation,
                candidate.start_at,
                candidate.end_at,
            ) {
                (Some(_), _, _) => candidate.next_attempt_at.is_none_or(|at| at <= now),
                // Moving to a certificate (org set ORG --credential certificate): now.
                (None, _, _)
                    if candidate
                        .settings
                        .0
                        .moves_to_certificate(candidate.credential_kind) =>
                {
                    true
                }
                (None, start, Some(end)) => {
                    let policy = config.policy.for_organization(&candidate.settings.0);
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
            Ok(Ok(report)) if !report.step.advanced() => {}
            Ok(Ok(report)) => {
                tracing::info!(rotation = ?report.rotation_id, step = %report.step, "rotation advanced");
                advanced += 1;
            }
            Ok(Err(error @ RotationError::Busy(_))) => tracing::info!("{error}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: crate::domain::RotationId, next_attempt_in_secs: i64) -> RotationRow {
        let now = Utc::now();
        RotationRow {
            id,
            organization_id: crate::domain::OrganizationId::from_uuid(Uuid::nil()),
            step: RotationStep::Added,
            old_credential_id: None,
            new_credential_id: None,
            new_key_id: None,
            attempts: 0,
            next_attempt_at: now + chrono::Duration::seconds(next_attempt_in_secs),
            created_at: now,
            finished_at: None,
            removing_key_id: None,
        }
    }

    #[test]
    fn only_the_journal_and_the_plan_start_a_rotation() {
        let now = Utc::now();
        let (mine, other) = (
            crate::domain::RotationId::new(),
            crate::domain::RotationId::new(),
        );
        let waiting = open(mine, 60);
        let ready = open(mine, -1);
        let cases: &[(Trigger, Option<&RotationRow>, bool, bool, Start)] = &[
            // Going on after verification: this rotation, or nothing.
            (
                Trigger::Resume(mine),
                Some(&waiting),
                false,
                true,
                Start::Continue,
            ),
            (Trigger::Resume(mine), None, true, true, Start::Stop),
            (
                Trigger::Resume(other),
                Some(&ready),
                true,
                true,
                Start::Stop,
            ),
            // The job: due by the plan, or an open rotation whose wait is over.
            (Trigger::Due, Some(&waiting), true, true, Start::Stop),
            (Trigger::Due, Some(&ready), false, true, Start::Continue),
            (Trigger::Due, None, false, true, Start::Stop),
            (Trigger::Due, None, true, true, Start::Begin),
            (Trigger::Due, None, true, false, Start::NoSecret),
            // By hand: whatever the plan and the wait.
            (
                Trigger::OnDemand,
                Some(&waiting),
                false,
                true,
                Start::Continue,
            ),
            (Trigger::OnDemand, None, false, true, Start::Begin),
            (Trigger::OnDemand, None, false, false, Start::NoSecret),
        ];
        for (trigger, journal, due, has_secret, expected) in cases {
            assert_eq!(
                &start(*trigger, *journal, *due, *has_secret, now),
                expected,
                "{trigger:?} with {:?}, due {due}, secret {has_secret}",
                journal.map(|row| (row.id == mine, row.next_attempt_at > now))
            );
        }
    }

    #[test]
    fn database_outages_are_told_from_answers() {
        assert!(transient_database_error(&sqlx::Error::PoolTimedOut));
        assert!(transient_database_error(&sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
        )));
        assert!(!transient_database_error(&sqlx::Error::RowNotFound));
        let wrapped = anyhow::Error::from(sqlx::Error::PoolTimedOut).context("storing the secret");
        assert!(is_database_trouble(&wrapped));
        assert!(!is_database_trouble(&anyhow::anyhow!(
            "the stored secret does not open"
        )));
        let mut outage = DatabaseOutage::default();
        let total: u64 = std::iter::from_fn(|| outage.next_wait())
            .map(|wait| wait.as_secs())
            .sum();
        assert!((30..=90).contains(&total), "about a minute, not {total}s");
    }
}
