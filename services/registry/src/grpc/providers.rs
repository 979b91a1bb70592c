//! `ProviderService`: the providers' register and support relations.

use esocial_auth::Role;
use esocial_kit::paging::{PageStart, finish_page, page_from_proto};
use esocial_kit::{Violations, dates};
use esocial_proto::registry::v1 as pb;
use esocial_proto::registry::v1::provider_service_server::ProviderService;
use tonic::{Request, Response, Status};

use super::{RegistryApi, caller_of, id, internal, invalid, reason, request_id, text};
use crate::access::purpose;
use crate::providers::{
    Assignment, Section, SupportStatus, is_support_code, provider_data, provider_to_proto, relation_to_proto,
};

/// Roles that see the RNOKPP of entrepreneurs and individual caregivers.
const PERSONAL_DATA_ROLES: &[Role] = &[
    Role::CnapAdministrator,
    Role::SocialSpecialist,
    Role::DecisionMaker,
    Role::FinanceOfficer,
    Role::RegistryAuditor,
    Role::Service,
];

fn sees_personal_data(caller: &esocial_auth::Caller) -> bool {
    PERSONAL_DATA_ROLES.iter().any(|role| caller.has_role(*role))
}

#[tonic::async_trait]
impl ProviderService for RegistryApi {
    async fn register_provider(
        &self,
        request: Request<pb::RegisterProviderRequest>,
    ) -> Result<Response<pb::RegisterProviderResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let today = esocial_kit::time::kyiv_today();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let valid_from = dates::or_default(&mut violations, "valid_from", request.valid_from.as_ref(), today);
        let reason = text(&mut violations, "reason", &request.reason, false, super::REASON_LENGTH_MAX);
        let data = match &request.data {
            Some(data) => provider_data(&mut violations, data, &self.registry, today).await,
            None => {
                violations.add("data", "is required");
                None
            }
        };
        invalid(violations)?;
        let Some(data) = data else { return Err(internal(anyhow::anyhow!("validated data missing"))) };
        let reason = if reason.is_empty() { "registration".to_owned() } else { reason };
        let response = self
            .once(&caller, "RegisterProvider", request_id, &request, async |transaction| {
                let provider = self.registry.register_provider(transaction, &caller, data, valid_from, &reason).await?;
                Ok(pb::RegisterProviderResponse { provider: Some(provider_to_proto(&provider, true)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn update_provider(
        &self,
        request: Request<pb::UpdateProviderRequest>,
    ) -> Result<Response<pb::UpdateProviderResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let today = esocial_kit::time::kyiv_today();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let provider_id = id(&mut violations, "provider_id", &request.provider_id);
        if request.expected_version == 0 {
            violations.add("expected_version", "is required: the version the change is based on");
        }
        let valid_from = dates::or_default(&mut violations, "valid_from", request.valid_from.as_ref(), today);
        let reason = reason(&mut violations, &request.reason);
        let data = match &request.data {
            Some(data) => provider_data(&mut violations, data, &self.registry, today).await,
            None => {
                violations.add("data", "is required");
                None
            }
        };
        invalid(violations)?;
        let Some(data) = data else { return Err(internal(anyhow::anyhow!("validated data missing"))) };
        let response = self
            .once(&caller, "UpdateProvider", request_id, &request, async |transaction| {
                let provider = self
                    .registry
                    .update_provider(
                        transaction,
                        &caller,
                        provider_id,
                        request.expected_version,
                        data,
                        valid_from,
                        &reason,
                    )
                    .await?;
                Ok(pb::UpdateProviderResponse { provider: Some(provider_to_proto(&provider, true)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_provider(
        &self,
        request: Request<pb::GetProviderRequest>,
    ) -> Result<Response<pb::GetProviderResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let provider_id = id(&mut violations, "provider_id", &request.provider_id);
        let as_of =
            dates::or_default(&mut violations, "as_of", request.as_of.as_ref(), esocial_kit::time::kyiv_today());
        invalid(violations)?;
        let provider = self.registry.provider(provider_id, as_of).await?;
        Ok(Response::new(pb::GetProviderResponse {
            provider: Some(provider_to_proto(&provider, sees_personal_data(&caller))),
        }))
    }

    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let section = Section::from_proto(request.section);
        if section.is_none() && request.section != 0 {
            violations.add("section", "is not a section of the register");
        }
        let territory = request.territory.trim();
        if !territory.is_empty() {
            violations.check("territory", territory.parse::<esocial_identifiers::Katottg>());
        }
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<uuid::Uuid>(&mut violations);
        invalid(violations)?;
        let mut providers = self
            .registry
            .providers(section, Some(territory).filter(|territory| !territory.is_empty()), after, page.fetch_limit())
            .await?;
        let page_response = finish_page(&mut providers, &page, |last| PageStart::AfterKey(last.id.to_string()));
        let show = sees_personal_data(&caller);
        Ok(Response::new(pb::ListProvidersResponse {
            providers: providers.iter().map(|provider| provider_to_proto(provider, show)).collect(),
            page: Some(page_response),
        }))
    }

    async fn assign_support(
        &self,
        request: Request<pb::AssignSupportRequest>,
    ) -> Result<Response<pb::AssignSupportResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let person_id = id(&mut violations, "person_id", &request.person_id);
        let provider_id = id(&mut violations, "provider_id", &request.provider_id);
        let code = request.support_type_code.trim().to_owned();
        if !is_support_code(&code) {
            violations.add("support_type_code", "is not a support type code (capital letters, digits and _)");
        }
        if request.support_type_version == 0 {
            violations.add("support_type_version", "is required: the classifier version the decision used");
        }
        let decision_number = text(&mut violations, "decision_number", &request.decision_number, true, 100);
        let decision_date = dates::required(&mut violations, "decision_date", request.decision_date.as_ref());
        if decision_date.is_some_and(|date| date > esocial_kit::time::kyiv_today()) {
            violations.add("decision_date", "must not be in the future");
        }
        let period = dates::period(&mut violations, "period", request.period.as_ref());
        invalid(violations)?;
        let (Some(decision_date), Some((period_from, period_to))) = (decision_date, period) else {
            return Err(internal(anyhow::anyhow!("validated dates missing")));
        };
        let assignment = Assignment {
            person_id,
            support_type_code: code,
            support_type_version: request.support_type_version,
            provider_id,
            decision_number,
            decision_date,
            period_from,
            period_to,
        };
        let response = self
            .once(&caller, "AssignSupport", request_id, &request, async |transaction| {
                let relation = self.registry.assign_support(transaction, &caller, assignment).await?;
                Ok(pb::AssignSupportResponse { relation: Some(relation_to_proto(&relation)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn change_support(
        &self,
        request: Request<pb::ChangeSupportRequest>,
    ) -> Result<Response<pb::ChangeSupportResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let relation_id = id(&mut violations, "relation_id", &request.relation_id);
        if request.expected_version == 0 {
            violations.add("expected_version", "is required: the version the change is based on");
        }
        let status = SupportStatus::from_proto(request.status);
        if status.is_none() && request.status != 0 {
            violations.add("status", "is not a support status");
        }
        let period = match &request.period {
            Some(_) => dates::period(&mut violations, "period", request.period.as_ref()),
            None => None,
        };
        if request.status == 0 && request.period.is_none() {
            violations.add("status", "or period is required: what changes");
        }
        let reason = reason(&mut violations, &request.reason);
        invalid(violations)?;
        let response = self
            .once(&caller, "ChangeSupport", request_id, &request, async |transaction| {
                let relation = self
                    .registry
                    .change_support(
                        transaction,
                        &caller,
                        relation_id,
                        request.expected_version,
                        status,
                        period,
                        &reason,
                    )
                    .await?;
                Ok(pb::ChangeSupportResponse { relation: Some(relation_to_proto(&relation)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn list_support(
        &self,
        request: Request<pb::ListSupportRequest>,
    ) -> Result<Response<pb::ListSupportResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let person_id = id(&mut violations, "person_id", &request.person_id);
        let purpose = purpose(&mut violations, &request.purpose);
        invalid(violations)?;
        let relations = self.registry.support_of(&caller, person_id, &purpose).await?;
        Ok(Response::new(pb::ListSupportResponse { relations: relations.iter().map(relation_to_proto).collect() }))
    }
}
