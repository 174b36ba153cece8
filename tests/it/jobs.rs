//! Periodic jobs run by hand exactly as the scheduler runs them.

use sqlx::PgPool;

use crate::support::*;

#[sqlx::test]
async fn housekeeping_prunes_history_past_retention_and_keeps_the_rest(pool: PgPool) {
    let env = TestEnv::with_extra(
        &pool,
        "[jobs.housekeeping]\ncheck_history_retention = \"30d\"\n",
    );
    env.add_org("contoso", TENANT_A, CLIENT_A, "Abc8Q~x")
        .success();
    for age_days in [45, 31, 29, 1] {
        sqlx::query(
            "INSERT INTO checks (organization_id, started_at, finished_at, state)
             SELECT id, now() - make_interval(days => $1), now() - make_interval(days => $1), 'healthy' FROM organizations",
        )
        .bind(age_days)
        .execute(&pool)
        .await
        .unwrap();
    }
    let outcome = env.run(&["job", "run", "housekeeping"]);
    assert!(
        outcome.success().stdout.contains("deleted 2 checks"),
        "{outcome:?}"
    );
    let remaining: Vec<f64> = sqlx::query_scalar(
        "SELECT round(extract(epoch FROM now() - started_at) / 86400)::float8 FROM checks ORDER BY started_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(remaining, [29.0, 1.0]);

    // Idempotent: a second run finds nothing more to do.
    assert!(
        env.run(&["job", "run", "housekeeping"])
            .success()
            .stdout
            .contains("deleted 0 checks")
    );
    let runs: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT job, trigger, outcome FROM job_runs ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        runs,
        vec![
            (
                "housekeeping".into(),
                "manual".into(),
                Some("succeeded".into())
            );
            2
        ]
    );
    let list = env.run(&["job", "list"]);
    assert!(
        list.success().stdout.contains("housekeeping") && list.stdout.contains("succeeded"),
        "{list:?}"
    );

    env.run(&["job", "run", "nonsense"])
        .fails_with(2, "invalid value 'nonsense'");
}
