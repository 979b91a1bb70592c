//! `IdpService`: IDP registrations, e-certificates, verification, shares.

use esocial_identifiers::{Edrpou, Rnokpp};
use esocial_kit::{Violations, dates};
use esocial_proto::registry::v1 as pb;
use esocial_proto::registry::v1::idp_service_server::IdpService;
use tonic::{Request, Response, Status};

use super::{RegistryApi, caller_of, id, internal, invalid, printable, reason, request_id, text};
use crate::access::purpose;
use crate::idp::{NewRegistration, SHAREABLE_DOCUMENTS, certificate_to_proto, registration_to_proto, share_to_proto};

const FAMILY_MEMBERS_MAX: usize = 30;

#[tonic::async_trait]
impl IdpService for RegistryApi {
    async fn register_idp(
        &self,
        request: Request<pb::RegisterIdpRequest>,
    ) -> Result<Response<pb::RegisterIdpResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let today = esocial_kit::time::kyiv_today();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let person_id = id(&mut violations, "person_id", &request.person_id);
        if request.family_member_ids.len() > FAMILY_MEMBERS_MAX {
            violations.add("family_member_ids", format!("must list at most {FAMILY_MEMBERS_MAX} persons"));
        }
        let mut family_member_ids = Vec::new();
        for (index, member) in request.family_member_ids.iter().enumerate() {
            let member = id(&mut violations, &format!("family_member_ids[{index}]"), member);
            if member == person_id || family_member_ids.contains(&member) {
                violations.add(format!("family_member_ids[{index}]"), "repeats the person or another member");
            }
            family_member_ids.push(member);
        }
        let territories = &self.registry.territories;
        let origin = crate::validate::territory(
            &mut violations,
            "origin_territory",
            &request.origin_territory,
            territories,
            today,
        )
        .await;
        let current = crate::validate::territory(
            &mut violations,
            "current_territory",
            &request.current_territory,
            territories,
            today,
        )
        .await;
        if origin.is_some() && origin == current {
            violations.add("current_territory", "must differ from the place of origin");
        }
        let current_address = text(&mut violations, "current_address", &request.current_address, true, 300);
        let registered_on = dates::or_default(&mut violations, "registered_on", request.registered_on.as_ref(), today);
        if registered_on > today {
            violations.add("registered_on", "must not be in the future");
        }
        let registered_by = if request.registered_by.trim().is_empty() {
            match caller.organization_edrpou.as_deref().map(str::parse::<Edrpou>) {
                Some(Ok(edrpou)) => Some(edrpou),
                _ => {
                    violations.add("registered_by", "is required: the EDRPOU of the registering body");
                    None
                }
            }
        } else {
            violations.check("registered_by", request.registered_by.trim().parse::<Edrpou>())
        };
        invalid(violations)?;
        let (Some(origin), Some(current), Some(registered_by)) = (origin, current, registered_by) else {
            return Err(internal(anyhow::anyhow!("validated registration missing")));
        };
        let new = NewRegistration {
            person_id,
            family_member_ids,
            origin_territory: origin.to_string(),
            current_territory: current.to_string(),
            current_address,
            registered_on,
            registered_by,
        };
        let response = self
            .once(&caller, "RegisterIdp", request_id, &request, async |transaction| {
                let registration = self.registry.register_idp(transaction, &caller, new).await?;
                Ok(pb::RegisterIdpResponse { registration: Some(registration_to_proto(&registration)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn deregister_idp(
        &self,
        request: Request<pb::DeregisterIdpRequest>,
    ) -> Result<Response<pb::DeregisterIdpResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let today = esocial_kit::time::kyiv_today();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let registration_id = id(&mut violations, "registration_id", &request.registration_id);
        let reason = reason(&mut violations, &request.reason);
        let on = dates::or_default(&mut violations, "deregistered_on", request.deregistered_on.as_ref(), today);
        if on > today {
            violations.add("deregistered_on", "must not be in the future");
        }
        invalid(violations)?;
        let response = self
            .once(&caller, "DeregisterIdp", request_id, &request, async |transaction| {
                let registration =
                    self.registry.deregister_idp(transaction, &caller, registration_id, &reason, on).await?;
                Ok(pb::DeregisterIdpResponse { registration: Some(registration_to_proto(&registration)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_idp_registration(
        &self,
        request: Request<pb::GetIdpRegistrationRequest>,
    ) -> Result<Response<pb::GetIdpRegistrationResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let registration_id = id(&mut violations, "registration_id", &request.registration_id);
        let purpose = purpose(&mut violations, &request.purpose);
        invalid(violations)?;
        let registration = self.registry.idp_registration(&caller, registration_id, &purpose).await?;
        Ok(Response::new(pb::GetIdpRegistrationResponse { registration: Some(registration_to_proto(&registration)) }))
    }

    async fn issue_idp_certificate(
        &self,
        request: Request<pb::IssueIdpCertificateRequest>,
    ) -> Result<Response<pb::IssueIdpCertificateResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let registration_id = id(&mut violations, "registration_id", &request.registration_id);
        invalid(violations)?;
        let response = self
            .once(&caller, "IssueIdpCertificate", request_id, &request, async |transaction| {
                let certificate = self
                    .registry
                    .issue_certificate(transaction, &caller, registration_id, esocial_kit::time::kyiv_today())
                    .await?;
                Ok(pb::IssueIdpCertificateResponse { certificate: Some(certificate_to_proto(&certificate)?) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn revoke_idp_certificate(
        &self,
        request: Request<pb::RevokeIdpCertificateRequest>,
    ) -> Result<Response<pb::RevokeIdpCertificateResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let certificate_id = id(&mut violations, "certificate_id", &request.certificate_id);
        let reason = reason(&mut violations, &request.reason);
        invalid(violations)?;
        let response = self
            .once(&caller, "RevokeIdpCertificate", request_id, &request, async |transaction| {
                let certificate =
                    self.registry.revoke_certificate(transaction, &caller, certificate_id, &reason).await?;
                Ok(pb::RevokeIdpCertificateResponse { certificate: Some(certificate_to_proto(&certificate)?) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn verify_idp_certificate(
        &self,
        request: Request<pb::VerifyIdpCertificateRequest>,
    ) -> Result<Response<pb::VerifyIdpCertificateResponse>, Status> {
        let caller = request.extensions().get::<esocial_auth::Caller>().cloned();
        let request = request.into_inner();
        let mut violations = Violations::new();
        let code = text(&mut violations, "code", &request.code, true, 64);
        invalid(violations)?;
        let verification = self.registry.verify_certificate(&code, caller.as_ref()).await?;
        Ok(Response::new(pb::VerifyIdpCertificateResponse {
            valid: verification.valid,
            reason: verification.reason.to_owned(),
            number: verification.number,
            issued_on: verification.issued_on.map(dates::to_proto),
            holder_initials: verification.holder_initials,
        }))
    }

    async fn create_share_request(
        &self,
        request: Request<pb::CreateShareRequestRequest>,
    ) -> Result<Response<pb::CreateShareRequestResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let rnokpp = violations.check("person_rnokpp", request.person_rnokpp.trim().parse::<Rnokpp>());
        let mut documents: Vec<String> = Vec::new();
        for (index, document) in request.documents.iter().enumerate() {
            if !SHAREABLE_DOCUMENTS.contains(&document.as_str()) {
                violations.add(
                    format!("documents[{index}]"),
                    format!("is not a document that can be shared: {}", SHAREABLE_DOCUMENTS.join(", ")),
                );
            } else if !documents.contains(document) {
                documents.push(document.clone());
            }
        }
        if request.documents.is_empty() {
            violations.add("documents", "is required: which documents are asked for");
        }
        let purpose = purpose(&mut violations, &request.purpose);
        printable(&mut violations, "purpose", &purpose);
        invalid(violations)?;
        let Some(rnokpp) = rnokpp else { return Err(internal(anyhow::anyhow!("validated RNOKPP missing"))) };
        let response = self
            .once(&caller, "CreateShareRequest", request_id, &request, async |transaction| {
                let share =
                    self.registry.create_share(transaction, &caller, rnokpp.as_str(), documents, &purpose).await?;
                Ok(pb::CreateShareRequestResponse { share: Some(share_to_proto(&share)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn decide_share_request(
        &self,
        request: Request<pb::DecideShareRequestRequest>,
    ) -> Result<Response<pb::DecideShareRequestResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let share_id = id(&mut violations, "share_id", &request.share_id);
        let rnokpp = violations.check("person_rnokpp", request.person_rnokpp.trim().parse::<Rnokpp>());
        invalid(violations)?;
        let Some(rnokpp) = rnokpp else { return Err(internal(anyhow::anyhow!("validated RNOKPP missing"))) };
        let response = self
            .once(&caller, "DecideShareRequest", request_id, &request, async |transaction| {
                let share = self.registry.decide_share(transaction, share_id, rnokpp.as_str(), request.approve).await?;
                Ok(pb::DecideShareRequestResponse { share: Some(share_to_proto(&share)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_shared_copy(
        &self,
        request: Request<pb::GetSharedCopyRequest>,
    ) -> Result<Response<pb::GetSharedCopyResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let share_id = id(&mut violations, "share_id", &request.share_id);
        invalid(violations)?;
        let mut transaction = self.registry.store.pool().begin().await.map_err(crate::service::Error::from)?;
        let copy = self.registry.shared_copy(&mut transaction, &caller, share_id).await?;
        transaction.commit().await.map_err(crate::service::Error::from)?;
        Ok(Response::new(pb::GetSharedCopyResponse {
            share: Some(share_to_proto(&copy.share)),
            pdf: copy.pdf,
            detached_signature: copy.detached_signature,
        }))
    }

    async fn list_shares(
        &self,
        request: Request<pb::ListSharesRequest>,
    ) -> Result<Response<pb::ListSharesResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let person_id = id(&mut violations, "person_id", &request.person_id);
        let purpose = purpose(&mut violations, &request.purpose);
        invalid(violations)?;
        let shares = self.registry.shares_of(&caller, person_id, &purpose).await?;
        Ok(Response::new(pb::ListSharesResponse { shares: shares.iter().map(share_to_proto).collect() }))
    }
}
