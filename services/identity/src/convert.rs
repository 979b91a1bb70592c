//! Between protobuf messages and the identity service's types, with
//! validation that names the offending field.

use base64::Engine as _;
use esocial_identifiers::Katottg;
use esocial_kit::Violations;
use esocial_proto::common::v1 as common;
use esocial_proto::identity::v1 as pb;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};

use crate::domain::{
    Account, AccountStatus, Actor, CertificateRecord, CertificateStatus, Organization, OrganizationKind, SystemClient,
};

pub fn actor_to_proto(actor: &Actor) -> common::Actor {
    common::Actor {
        subject: actor.subject.clone(),
        organization_edrpou: actor.organization.clone().unwrap_or_default(),
    }
}

pub fn kind_to_proto(kind: OrganizationKind) -> pb::OrganizationKind {
    match kind {
        OrganizationKind::SocialProtectionBody => pb::OrganizationKind::SocialProtectionBody,
        OrganizationKind::AdministrativeServiceCentre => pb::OrganizationKind::AdministrativeServiceCentre,
        OrganizationKind::Provider => pb::OrganizationKind::Provider,
        OrganizationKind::MinistryUnit => pb::OrganizationKind::MinistryUnit,
        OrganizationKind::StateSystem => pb::OrganizationKind::StateSystem,
    }
}

pub fn kind_from_proto(kind: i32) -> Option<OrganizationKind> {
    match pb::OrganizationKind::try_from(kind).ok()? {
        pb::OrganizationKind::Unspecified => None,
        pb::OrganizationKind::SocialProtectionBody => Some(OrganizationKind::SocialProtectionBody),
        pb::OrganizationKind::AdministrativeServiceCentre => Some(OrganizationKind::AdministrativeServiceCentre),
        pb::OrganizationKind::Provider => Some(OrganizationKind::Provider),
        pb::OrganizationKind::MinistryUnit => Some(OrganizationKind::MinistryUnit),
        pb::OrganizationKind::StateSystem => Some(OrganizationKind::StateSystem),
    }
}

pub fn organization_to_proto(organization: &Organization) -> pb::Organization {
    pb::Organization {
        id: organization.id.to_string(),
        edrpou: organization.edrpou.to_string(),
        name: organization.name.clone(),
        kind: kind_to_proto(organization.kind).into(),
        territory: organization.territory.to_string(),
        active: organization.active,
        version: organization.version,
    }
}

pub fn status_to_proto(status: AccountStatus) -> pb::AccountStatus {
    match status {
        AccountStatus::Active => pb::AccountStatus::Active,
        AccountStatus::Suspended => pb::AccountStatus::Suspended,
    }
}

pub fn account_to_proto(account: &Account) -> pb::Account {
    pb::Account {
        id: account.id.to_string(),
        rnokpp: account.rnokpp.to_string(),
        full_name: account.full_name.clone(),
        organization_id: account.organization_id.to_string(),
        position: account.position.clone(),
        roles: account.roles.iter().map(|role| role.as_str().to_owned()).collect(),
        territories: account.territories.iter().map(ToString::to_string).collect(),
        status: status_to_proto(account.status).into(),
        version: account.version,
    }
}

pub fn certificate_status_to_proto(status: CertificateStatus) -> pb::CertificateStatus {
    match status {
        CertificateStatus::Active => pb::CertificateStatus::Active,
        CertificateStatus::Blocked => pb::CertificateStatus::Blocked,
        CertificateStatus::Revoked => pb::CertificateStatus::Revoked,
    }
}

pub fn certificate_to_proto(certificate: &CertificateRecord) -> pb::Certificate {
    pb::Certificate {
        id: certificate.id.to_string(),
        account_id: certificate.account_id.to_string(),
        fingerprint: certificate.fingerprint.clone(),
        subject: certificate.subject.clone(),
        issuer: certificate.issuer.clone(),
        serial_number: certificate.serial_number.clone(),
        not_before: certificate.not_before.to_rfc3339(),
        not_after: certificate.not_after.to_rfc3339(),
        status: certificate_status_to_proto(certificate.status).into(),
        status_reason: certificate.status_reason.clone(),
        replaces_certificate_id: certificate.replaces.map(|id| id.to_string()).unwrap_or_default(),
    }
}

/// A published or registered key as the API shows it.
pub fn jwk_to_proto(jwk: &Jwk) -> pb::Jwk {
    let value = serde_json::to_value(jwk).unwrap_or_default();
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    pb::Jwk {
        kid: field("kid"),
        kty: field("kty"),
        crv: field("crv"),
        x: field("x"),
        alg: field("alg"),
        r#use: field("use"),
    }
}

pub fn client_to_proto(client: &SystemClient) -> pb::SystemClient {
    pb::SystemClient {
        client_id: client.client_id.clone(),
        name: client.name.clone(),
        public_key: Some(jwk_to_proto(&client.public_jwk)),
        scopes: client.scopes.iter().map(|role| role.as_str().to_owned()).collect(),
        active: client.active,
        audiences: client.audiences.clone(),
        version: client.version,
    }
}

/// A system client's public key: an Ed25519 JWK with a 32-byte point.
pub fn client_jwk_from_proto(violations: &mut Violations, field: &str, key: Option<&pb::Jwk>) -> Option<Jwk> {
    let Some(key) = key else {
        violations.add(field, "is required: an Ed25519 JWK (kty OKP, crv Ed25519, x)");
        return None;
    };
    if key.kty != "OKP" || key.crv != "Ed25519" {
        violations.add(field, "must be an Ed25519 key (kty OKP, crv Ed25519)");
        return None;
    }
    let point = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&key.x).ok();
    let valid_point = point
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .is_some_and(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_ok());
    if !valid_point {
        violations.add(format!("{field}.x"), "must be the base64url 32-byte Ed25519 public key");
        return None;
    }
    let value = serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": key.x, "alg": "EdDSA", "use": "sig",
        "kid": if key.kid.is_empty() { serde_json::Value::Null } else { serde_json::Value::String(key.kid.clone()) },
    });
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    matches!(&jwk.algorithm, AlgorithmParameters::OctetKeyPair(parameters) if parameters.curve == EllipticCurve::Ed25519)
        .then_some(jwk)
}

/// Territory codes, each checked.
pub fn territories(violations: &mut Violations, field: &str, codes: &[String]) -> Vec<Katottg> {
    let mut parsed = Vec::with_capacity(codes.len());
    if codes.len() > 100 {
        violations.add(field, "must have at most 100 codes");
    }
    for (index, code) in codes.iter().enumerate() {
        if let Some(code) = violations.check(&format!("{field}[{index}]"), code.trim().parse::<Katottg>()) {
            parsed.push(code);
        }
    }
    parsed
}

pub fn uuid(violations: &mut Violations, field: &str, text: &str) -> Option<uuid::Uuid> {
    if text.is_empty() {
        violations.add(field, "is required");
        return None;
    }
    violations.check(field, uuid::Uuid::parse_str(text.trim()).map_err(|_| "must be a UUID"))
}

pub fn text(violations: &mut Violations, field: &str, value: &str, required: bool, length_max: usize) -> String {
    violations.text(field, value, required, length_max)
}
