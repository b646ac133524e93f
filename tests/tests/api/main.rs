//! Every integration test, compiled as one binary (one link instead of
//! nine). Each module is a suite of its own; the harness is in `src/`.

mod app_only;
mod aws_credentials;
mod browser;
mod certificates;
mod consent_budget;
mod end_to_end;
mod eventual_consistency;
mod fault_campaign;
mod fleet_status;
mod hostile_provider;
mod lambda_functions;
mod lambda_http;
mod least_privilege;
mod notifications;
mod openapi;
mod pages;
mod refresh;
mod rotation;
mod sam_template;
mod schema_fuzz;
mod secrets_manager;
mod self_service;
mod serve_limits;
mod short_tokens;
mod smoke_script;
mod store_quotas;
mod strict_identity;
mod token_read;
mod value_size;
mod vendor;
