//! `kodo-access job …`: list the periodic jobs, run one now.

use clap::Subcommand;

use crate::config::Settings;
use crate::jobs::{self, JobName, Trigger};

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Each job with its schedule, its last run and how many runs failed.
    List,
    /// Run one job now, once, exactly as the scheduler would.
    Run {
        #[arg(value_enum)]
        name: JobName,
    },
}

pub async fn execute(settings: Settings, command: &JobCommand) -> anyhow::Result<()> {
    let context = super::one_shot_context(settings).await?;
    match command {
        JobCommand::Run { name } => {
            let summary = jobs::run(&context, *name, Trigger::Manual).await?;
            println!("{}: {summary}", name.as_str());
            Ok(())
        }
        JobCommand::List => {
            let mut connection = context.pool.acquire().await?;
            let latest = crate::store::job_runs::latest(&mut connection).await?;
            let failures = crate::store::job_runs::failures_by_job(&mut connection).await?;
            let mut table = super::table(&[
                "JOB",
                "SCHEDULE (UTC)",
                "LAST RUN",
                "OUTCOME",
                "FAILED RUNS",
                "SUMMARY",
            ]);
            for &job in JobName::ALL {
                let last = latest.iter().find(|run| run.job == job.as_str());
                let failed = failures
                    .iter()
                    .find(|(name, _)| name == job.as_str())
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                table.add_row(vec![
                    job.as_str().to_string(),
                    job.schedule(&context).to_string(),
                    super::format_time(last.map(|run| run.started_at)),
                    last.and_then(|run| run.outcome.clone())
                        .unwrap_or_else(|| "-".into()),
                    failed.to_string(),
                    last.and_then(|run| run.summary.clone()).unwrap_or_default(),
                ]);
            }
            println!("{table}");
            Ok(())
        }
    }
}
