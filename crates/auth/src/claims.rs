use serde::{Deserialize, Serialize};

/// Roles of people and systems, as carried in the `roles` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts applications in an administrative service centre (ЦНАП).
    CnapAdministrator,
    /// Prepares decisions in a social protection body.
    SocialSpecialist,
    /// Signs decisions.
    DecisionMaker,
    FinanceOfficer,
    RegistryAuditor,
    /// Maintains the classifier and reference books.
    ClassifierAdmin,
    /// Manages accounts, roles, certificates and member systems.
    SecurityAdmin,
    /// An external developer in the sandbox.
    Integrator,
    /// Another esocial service calling with its own client credentials.
    Service,
    /// The exchange gateway: may exchange a member system's token for an
    /// internal one (RFC 8693), and nothing else.
    Gateway,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::CnapAdministrator,
        Role::SocialSpecialist,
        Role::DecisionMaker,
        Role::FinanceOfficer,
        Role::RegistryAuditor,
        Role::ClassifierAdmin,
        Role::SecurityAdmin,
        Role::Integrator,
        Role::Service,
        Role::Gateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::CnapAdministrator => "cnap_administrator",
            Role::SocialSpecialist => "social_specialist",
            Role::DecisionMaker => "decision_maker",
            Role::FinanceOfficer => "finance_officer",
            Role::RegistryAuditor => "registry_auditor",
            Role::ClassifierAdmin => "classifier_admin",
            Role::SecurityAdmin => "security_admin",
            Role::Integrator => "integrator",
            Role::Service => "service",
            Role::Gateway => "gateway",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// How a system client's tokens name it in `sub`: `client:<client id>`.
/// People's tokens carry their account id (a UUID), so the two never meet.
pub const CLIENT_SUBJECT_PREFIX: &str = "client:";

/// The system client a token's subject names; `None` for a person.
pub fn system_client_of(subject: &str) -> Option<&str> {
    subject.strip_prefix(CLIENT_SUBJECT_PREFIX)
}

/// `aud` may be one string or a list (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims of an esocial access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: Audience,
    /// Account id (people) or `client:<client id>` (systems).
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id, for revocation lists and audit records.
    pub jti: String,
    /// Role names; unknown names are ignored by [`Caller`].
    #[serde(default)]
    pub roles: Vec<String>,
    /// EDRPOU of the caller's organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// KATOTTG codes of the territories the caller serves (empty: the whole
    /// country for national roles, nothing for territorial ones; the service
    /// decides per method).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub territories: Vec<String>,
    /// Authentication methods (RFC 8176), `qes` for a qualified e-signature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The sign-in session the token belongs to (people's tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Who acts for the subject (RFC 8693 §4.1): in a token the exchange
    /// gateway obtained for a member system, the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// The `act` claim: the party acting on the subject's behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
}

/// The verified caller of a request, as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub roles: Vec<Role>,
    pub organization_edrpou: Option<String>,
    pub territories: Vec<String>,
    pub authentication_methods: Vec<String>,
    pub token_id: String,
    pub session_id: Option<String>,
    /// The party acting for the subject (`act.sub`), when there is one.
    pub actor: Option<String>,
    /// Until when the token is accepted (seconds since 1970-01-01 UTC: its
    /// `exp` and the verifier's leeway, [`crate::TokenVerifier::accepted_until`]):
    /// a stream it opened ends then.
    pub token_accepted_until: u64,
}

impl Caller {
    /// The caller of a token with `claims`, accepted until `accepted_until`.
    pub fn from_claims(claims: &Claims, accepted_until: u64) -> Self {
        let mut roles: Vec<Role> = claims.roles.iter().filter_map(|name| Role::parse(name)).collect();
        roles.sort_by_key(|role| role.as_str());
        roles.dedup();
        Self {
            subject: claims.sub.clone(),
            roles,
            organization_edrpou: claims.org.clone(),
            territories: claims.territories.clone(),
            authentication_methods: claims.amr.clone(),
            token_id: claims.jti.clone(),
            session_id: claims.sid.clone(),
            actor: claims.act.as_ref().map(|actor| actor.sub.clone()),
            token_accepted_until: accepted_until,
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the caller signed in with a qualified electronic signature.
    pub fn used_qualified_signature(&self) -> bool {
        self.authentication_methods.iter().any(|method| method == "qes")
    }
}
