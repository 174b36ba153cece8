//! The shipped permissions manifest against Microsoft's own app roles, as the simulated
//! cloud recorded them (crates/simulator/catalogue.json, not derived from the manifest):
//! every (resource, permission, id) kodo-access requires must exist there, or a real
//! tenant would report the whole fleet `permissions_missing`.

use kodo_simulator::catalogue::Catalogue;
use kodo_simulator::resource::Resource as SimResource;

use crate::sim_support::{Sim, default_scenario};
use crate::support::TestEnv;

#[test]
fn every_permission_the_manifest_requires_is_one_microsoft_publishes_with_that_id() {
    let catalogue = Catalogue::recorded();
    let manifest = kodo_access::config::builtin_manifest();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for resource in &manifest.resources {
        let sim = SimResource::from_app_id(&resource.app_id.to_string())
            .unwrap_or_else(|| panic!("{} is not a resource Microsoft publishes", resource.name));
        for permission in &resource.permissions {
            if permission.unpublished {
                // Listed for the record; Microsoft must indeed not publish it.
                assert!(
                    catalogue.role_by_name(sim, &permission.name).is_none()
                        && catalogue.role_by_id(sim, permission.id).is_none(),
                    "{} is published after all: drop `unpublished`",
                    permission.name
                );
                continue;
            }
            checked += 1;
            match catalogue.role_by_name(sim, &permission.name) {
                Some(role) if role.id == permission.id => {}
                Some(role) => wrong.push(format!(
                    "{}:{} is {} at Microsoft, the manifest says {}",
                    resource.key.as_str(),
                    permission.name,
                    role.id,
                    permission.id
                )),
                None => wrong.push(format!(
                    "{}:{} is no app role of {}",
                    resource.key.as_str(),
                    permission.name,
                    resource.name
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The seed's 46 permissions but TeamsApp.ReadWrite.All, and Application.ReadWrite.OwnedBy.
    assert_eq!(checked, 46);
}

#[sqlx::test]
async fn a_wrong_id_in_the_permissions_file_is_permissions_missing_as_in_a_real_tenant(
    pool: sqlx::PgPool,
) {
    // The tenant granted everything ("all"); the operator's manifest names Mail.ReadWrite
    // with a wrong GUID. Microsoft would never report that GUID granted, and neither does
    // the simulator, whose role ids are its own.
    let sim = Sim::start(&default_scenario()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("permissions.toml");
    let real = "e2a3a72e-5f79-4c64-b1b1-878b674786c9";
    assert!(kodo_access::config::DEFAULT_MANIFEST.contains(real));
    let wrong =
        kodo_access::config::DEFAULT_MANIFEST.replace(real, "0b2f6c1e-3c1d-4e57-9a61-5d7f0e4a9b12");
    std::fs::write(&path, wrong).unwrap();
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    crate::sim_support::register_contoso(&env).await;
    let check = || async {
        let outcome = env.exec(&["check", "contoso", "--output", "json"]).await;
        let results: Vec<serde_json::Value> =
            serde_json::from_str(&outcome.stdout).unwrap_or_else(|_| panic!("{outcome:?}"));
        (
            results[0]["state"].as_str().unwrap().to_string(),
            outcome.stdout,
        )
    };
    // With the shipped manifest the tenant is healthy.
    assert_eq!(check().await.0, "healthy");
    // The operator's manifest with the wrong id instead.
    let config = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "[microsoft]\n",
        &format!("[microsoft]\npermissions_file = \"{}\"\n", path.display()),
    );
    std::fs::write(&env.config_path, config).unwrap();
    let (state, output) = check().await;
    assert_eq!(state, "permissions_missing", "{output}");
    assert!(output.contains("Mail.ReadWrite"), "{output}");
    sim.running.stop().await;
}
