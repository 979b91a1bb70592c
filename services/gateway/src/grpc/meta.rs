//! `MetaService`: what the calling member may do (X-Road's metaservices).

use std::collections::BTreeSet;
use std::sync::Arc;

use esocial_proto::gateway::v1 as pb;
use esocial_proto::gateway::v1::meta_service_server::MetaService;
use tonic::{Request, Response, Status};

use super::{GatewayState, caller_of};
use crate::catalog;
use crate::domain::MethodPath;

#[derive(Debug, Clone)]
pub struct MetaApi(pub Arc<GatewayState>);

impl MetaApi {
    /// The methods the member may call and the gateway can forward.
    fn allowed(&self, member: &crate::directory::MemberEntry, only_service: Option<&str>) -> Vec<pb::AllowedMethod> {
        let forwarded = self.0.upstreams.packages();
        let services = self.0.catalog.services();
        catalog::allowed(&services, &forwarded, member, only_service)
            .map(|method| pb::AllowedMethod {
                method: method.path.clone(),
                client_streaming: method.client_streaming,
                server_streaming: method.server_streaming,
            })
            .collect()
    }
}

#[tonic::async_trait]
impl MetaService for MetaApi {
    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let member = self.0.member_of(&caller_of(&request)?)?;
        let services: BTreeSet<String> = self
            .allowed(&member, None)
            .into_iter()
            .filter_map(|method| MethodPath::parse(&method.method).map(|path| path.service.to_owned()))
            .collect();
        Ok(Response::new(pb::ListServicesResponse { services: services.into_iter().collect() }))
    }

    async fn list_allowed_methods(
        &self,
        request: Request<pb::ListAllowedMethodsRequest>,
    ) -> Result<Response<pb::ListAllowedMethodsResponse>, Status> {
        let member = self.0.member_of(&caller_of(&request)?)?;
        let service = request.get_ref().service.trim();
        if !service.is_empty() && !self.0.catalog.learn_exists(service, catalog::MISS_COOLDOWN).await {
            return Err(esocial_kit::ApiError::invalid_field("service", "no such service").into());
        }
        let methods = self.allowed(&member, Some(service).filter(|service| !service.is_empty()));
        Ok(Response::new(pb::ListAllowedMethodsResponse { member_id: member.member.member_id.to_string(), methods }))
    }
}
