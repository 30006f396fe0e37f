//! Which principals may run which blocks.

mod glob;

use serde::{Deserialize, Serialize};

use crate::{AuthError, Principal};

/// Maps principals (by subject or role) to the blocks they may run; everything else is denied.
///
/// A policy is a list of allow rules. A call to block `name` by `principal` is allowed when at
/// least one rule names the principal (its subject, one of its roles, or any principal) and
/// its glob matches `name`. Block-name globs use `*` for any run of characters (`::`
/// included) and `?` for exactly one character; there is no escape syntax.
///
/// # File format
///
/// A policy serializes as `{"rules": [...]}`. Each rule has `allow` (a glob) and exactly one
/// of `role`, `subject`, or `any_principal = true`; unknown fields are errors. In JSON:
///
/// ```json
/// {"rules": [
///   {"role": "viewer", "allow": "app::search*"},
///   {"subject": "admin", "allow": "*"},
///   {"any_principal": true, "allow": "public::*"}
/// ]}
/// ```
///
/// and in TOML:
///
/// ```toml
/// [[rules]]
/// role = "viewer"
/// allow = "app::search*"
///
/// [[rules]]
/// subject = "admin"
/// allow = "*"
/// ```
///
/// Load JSON with [`Policy::from_json`]; any other serde format works through `Deserialize`.
///
/// # Examples
///
/// ```
/// use distributed_scope_auth::{Policy, Principal};
///
/// let policy = Policy::deny_all()
///     .allow_role("viewer", "app::search*")
///     .allow_subject("admin", "*");
///
/// let reader = Principal::new("reader", ["viewer"]);
/// assert!(policy.allows(&reader, "app::search#0"));
/// assert!(!policy.allows(&reader, "app::delete#0"));
/// assert!(policy.allows(&Principal::new("admin", ["ops"]), "app::delete#0"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    rules: Vec<Rule>,
}

impl Policy {
    /// A policy with no rules: every call is denied. This is also [`Policy::default`].
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// **Dangerous:** a policy that lets every authenticated principal run every block.
    ///
    /// A valid token is then the only barrier. Meant for development and single-tenant
    /// setups where every token holder is fully trusted.
    pub fn allow_all() -> Self {
        Self::deny_all().allow_any_principal("*")
    }

    /// Lets every principal holding `role` run the blocks matching `glob`.
    pub fn allow_role(self, role: impl Into<String>, glob: impl Into<String>) -> Self {
        self.with_rule(Grantee::Role(role.into()), glob.into())
    }

    /// Lets the principal whose subject is `subject` run the blocks matching `glob`.
    pub fn allow_subject(self, subject: impl Into<String>, glob: impl Into<String>) -> Self {
        self.with_rule(Grantee::Subject(subject.into()), glob.into())
    }

    /// Lets every authenticated principal run the blocks matching `glob`.
    pub fn allow_any_principal(self, glob: impl Into<String>) -> Self {
        self.with_rule(Grantee::AnyPrincipal, glob.into())
    }

    /// Whether `principal` may run the block named `block` (for example `app::search#0`).
    pub fn allows(&self, principal: &Principal, block: &str) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.grantee.covers(principal) && glob::matches(&rule.allow, block))
    }

    /// Parses a policy from JSON (see the [file format](Policy#file-format)).
    ///
    /// # Errors
    ///
    /// [`AuthError::BadPolicy`] if the text is not valid JSON, has unknown fields, or has a
    /// rule without exactly one of `role`, `subject`, `any_principal`.
    pub fn from_json(json: &str) -> Result<Self, AuthError> {
        serde_json::from_str(json).map_err(AuthError::BadPolicy)
    }

    fn with_rule(mut self, grantee: Grantee, allow: String) -> Self {
        self.rules.push(Rule { grantee, allow });
        self
    }
}

/// One allow rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RuleDocument", into = "RuleDocument")]
struct Rule {
    grantee: Grantee,
    allow: String,
}

/// Whom a rule is for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Grantee {
    Role(String),
    Subject(String),
    AnyPrincipal,
}

impl Grantee {
    fn covers(&self, principal: &Principal) -> bool {
        match self {
            Self::Role(role) => principal.has_role(role),
            Self::Subject(subject) => principal.subject() == subject,
            Self::AnyPrincipal => true,
        }
    }
}

/// A rule as written in a policy file: flat and readable, checked by `TryFrom`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    any_principal: bool,
    allow: String,
}

impl TryFrom<RuleDocument> for Rule {
    type Error = &'static str;

    fn try_from(document: RuleDocument) -> Result<Self, Self::Error> {
        let grantee = match (document.role, document.subject, document.any_principal) {
            (Some(role), None, false) => Grantee::Role(role),
            (None, Some(subject), false) => Grantee::Subject(subject),
            (None, None, true) => Grantee::AnyPrincipal,
            _ => {
                return Err(
                    "a policy rule needs exactly one of `role`, `subject`, `any_principal = true`",
                );
            }
        };
        Ok(Self {
            grantee,
            allow: document.allow,
        })
    }
}

impl From<Rule> for RuleDocument {
    fn from(rule: Rule) -> Self {
        let (role, subject, any_principal) = match rule.grantee {
            Grantee::Role(role) => (Some(role), None, false),
            Grantee::Subject(subject) => (None, Some(subject), false),
            Grantee::AnyPrincipal => (None, None, true),
        };
        Self {
            role,
            subject,
            any_principal,
            allow: rule.allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> Principal {
        Principal::new("reader", ["viewer"])
    }

    #[test]
    fn denies_everything_by_default() {
        assert!(!Policy::deny_all().allows(&reader(), "app::search#0"));
        assert!(!Policy::default().allows(&reader(), ""));
    }

    #[test]
    fn role_rule_allows_matching_blocks_only() {
        let policy = Policy::deny_all().allow_role("viewer", "app::search*");
        assert!(policy.allows(&reader(), "app::search#0"));
        assert!(policy.allows(&reader(), "app::search_all#3"));
        assert!(!policy.allows(&reader(), "app::delete#0"));
        let guest = Principal::new("guest", ["anonymous"]);
        assert!(!policy.allows(&guest, "app::search#0"));
    }

    #[test]
    fn role_names_are_not_subjects() {
        let policy = Policy::deny_all().allow_role("admin", "*");
        assert!(!policy.allows(&Principal::new("admin", [""; 0]), "x"));
        let policy = Policy::deny_all().allow_subject("viewer", "*");
        assert!(!policy.allows(&reader(), "x"));
    }

    #[test]
    fn subject_rule_allows_that_subject_only() {
        let policy = Policy::deny_all().allow_subject("admin", "*");
        assert!(policy.allows(&Principal::new("admin", [""; 0]), "anything::at::all#9"));
        assert!(!policy.allows(&Principal::new("administrator", [""; 0]), "x"));
        assert!(!policy.allows(&reader(), "x"));
    }

    #[test]
    fn any_principal_and_allow_all_cover_everyone() {
        let policy = Policy::deny_all().allow_any_principal("public::*");
        assert!(policy.allows(&reader(), "public::ping#0"));
        assert!(!policy.allows(&reader(), "private::ping#0"));
        assert!(Policy::allow_all().allows(&Principal::new("nobody", [""; 0]), "private::x"));
    }

    #[test]
    fn rules_accumulate() {
        let policy = Policy::deny_all()
            .allow_role("viewer", "app::search*")
            .allow_role("editor", "app::edit*")
            .allow_subject("reader", "app::report#?");
        let reader = reader();
        assert!(policy.allows(&reader, "app::search#0"));
        assert!(policy.allows(&reader, "app::report#1"));
        assert!(!policy.allows(&reader, "app::report#10"));
        assert!(!policy.allows(&reader, "app::edit#0"));
    }

    #[test]
    fn loads_from_json() {
        let policy = Policy::from_json(
            r#"{"rules":[
                {"role":"viewer","allow":"app::search*"},
                {"subject":"admin","allow":"*"},
                {"any_principal":true,"allow":"public::*"}
            ]}"#,
        )
        .unwrap();
        let expected = Policy::deny_all()
            .allow_role("viewer", "app::search*")
            .allow_subject("admin", "*")
            .allow_any_principal("public::*");
        assert_eq!(policy, expected);
    }

    #[test]
    fn loads_from_toml() {
        let text = r#"
            [[rules]]
            role = "viewer"
            allow = "app::search*"

            [[rules]]
            subject = "admin"
            allow = "*"
        "#;
        let policy: Policy = toml::from_str(text).unwrap();
        let expected = Policy::deny_all()
            .allow_role("viewer", "app::search*")
            .allow_subject("admin", "*");
        assert_eq!(policy, expected);
        assert!(policy.allows(&reader(), "app::search#0"));
    }

    #[test]
    fn empty_documents_deny_all() {
        assert_eq!(Policy::from_json("{}").unwrap(), Policy::deny_all());
        assert_eq!(
            Policy::from_json(r#"{"rules":[]}"#).unwrap(),
            Policy::deny_all()
        );
    }

    #[test]
    fn round_trips_through_json_and_toml() {
        let policy = Policy::deny_all()
            .allow_role("viewer", "app::*")
            .allow_subject("ops", "admin::restart#?")
            .allow_any_principal("public::*");
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(Policy::from_json(&json).unwrap(), policy);
        let toml_text = toml::to_string(&policy).unwrap();
        assert_eq!(toml::from_str::<Policy>(&toml_text).unwrap(), policy);
    }

    #[test]
    fn rejects_ambiguous_or_unknown_rules() {
        for bad in [
            r#"{"rules":[{"allow":"*"}]}"#,
            r#"{"rules":[{"role":"a","subject":"b","allow":"*"}]}"#,
            r#"{"rules":[{"role":"a","any_principal":true,"allow":"*"}]}"#,
            r#"{"rules":[{"role":"a"}]}"#,
            r#"{"rules":[{"role":"a","allow":"*","deny":"x"}]}"#,
            r#"{"rule":[]}"#,
            "not json",
        ] {
            let error = Policy::from_json(bad).unwrap_err();
            assert!(matches!(error, AuthError::BadPolicy(_)), "{bad}");
        }
    }
}
