//! `infra/template.yaml` as the tests read it.
//!
//! The YAML is parsed with CloudFormation's short-form tags (`!Ref`, `!Sub`,
//! `!GetAtt`, `!If`, ...) kept, then turned into the long form that JSON
//! templates use (`{"Ref": ..}`, `{"Fn::Sub": ..}`, `{"Fn::GetAtt": [A, B]}`),
//! so that a test sees the same thing whichever form the template is written
//! in. IAM statements are flattened into [`Permission`]s with both branches
//! of every `Fn::If`, so a test can compare a role with exactly what it
//! should allow.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The four functions: logical id in the template and binary (= crate) name.
pub const FUNCTIONS: [(&str, &str); 4] = [
    ("ConnectStartFunction", "connect-start"),
    ("ConnectCallbackFunction", "connect-callback"),
    ("TokenReadFunction", "token-read"),
    ("TokenRefreshFunction", "token-refresh"),
];

/// How a secret ARN pattern starts in the template (before the secret name).
pub const SECRET_ARN_HEAD: &str =
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretPrefix}";

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

pub struct Template {
    root: Value,
}

impl Template {
    pub fn path() -> PathBuf {
        workspace_root().join("infra").join("template.yaml")
    }

    /// Reads and parses `infra/template.yaml`; panics with the reason.
    pub fn load() -> Self {
        let path = Self::path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Self::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let yaml: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        Ok(Self {
            root: long_form(yaml)?,
        })
    }

    pub fn root(&self) -> &Value {
        &self.root
    }

    pub fn resources(&self) -> &Map<String, Value> {
        self.root["Resources"]
            .as_object()
            .expect("the template has Resources")
    }

    pub fn resource(&self, id: &str) -> &Value {
        self.resources()
            .get(id)
            .unwrap_or_else(|| panic!("the template has no resource {id}"))
    }

    /// Logical ids and resources of one type, in the template's order.
    pub fn of_type(&self, kind: &str) -> Vec<(&str, &Value)> {
        self.resources()
            .iter()
            .filter(|(_, r)| r["Type"] == kind)
            .map(|(id, r)| (id.as_str(), r))
            .collect()
    }

    /// A function's property, or else the one from `Globals.Function`.
    pub fn function_property(&self, id: &str, name: &str) -> Option<&Value> {
        self.resource(id)["Properties"]
            .get(name)
            .or_else(|| self.root["Globals"]["Function"].get(name))
    }

    /// A function's environment variables, `Globals` merged under its own.
    pub fn function_environment(&self, id: &str) -> Map<String, Value> {
        let mut variables = Map::new();
        for source in [
            &self.root["Globals"]["Function"],
            &self.resource(id)["Properties"],
        ] {
            if let Some(own) = source["Environment"]["Variables"].as_object() {
                variables.extend(own.clone());
            }
        }
        variables
    }

    /// A function's `LoggingConfig`, `Globals` merged under its own.
    pub fn function_logging(&self, id: &str) -> Map<String, Value> {
        let mut config = Map::new();
        for source in [
            &self.root["Globals"]["Function"],
            &self.resource(id)["Properties"],
        ] {
            if let Some(own) = source["LoggingConfig"].as_object() {
                config.extend(own.clone());
            }
        }
        config
    }

    /// The logical id of the role a function runs with (`Role: !GetAtt X.Arn`).
    pub fn function_role(&self, id: &str) -> &str {
        let role = &self.resource(id)["Properties"]["Role"]["Fn::GetAtt"];
        assert_eq!(
            role[1], "Arn",
            "{id} must name its own role by !GetAtt X.Arn"
        );
        role[0].as_str().expect("a role's logical id")
    }

    /// The `Input` of the refresh function's EventBridge Scheduler event.
    pub fn schedule_input(&self) -> &str {
        let events = self.resource("TokenRefreshFunction")["Properties"]["Events"]
            .as_object()
            .expect("token-refresh has events");
        let schedules: Vec<&Value> = events
            .values()
            .filter(|e| e["Type"] == "ScheduleV2")
            .collect();
        assert_eq!(schedules.len(), 1, "token-refresh has one ScheduleV2 event");
        schedules[0]["Properties"]["Input"]
            .as_str()
            .expect("the schedule sends a string Input")
    }

    /// Every Allow of a role's inline policies, one per action and resource,
    /// with the condition under which it is there (`Fn::If` branches).
    pub fn role_permissions(&self, role_id: &str) -> Vec<Permission> {
        let role = self.resource(role_id);
        assert_eq!(role["Type"], "AWS::IAM::Role", "{role_id} is an IAM role");
        let mut permissions = Vec::new();
        for policy in role["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            permissions.extend(self.document_permissions(&policy["PolicyDocument"]));
        }
        permissions
    }

    /// The permissions of a policy document (statements under `Fn::If`s included).
    pub fn document_permissions(&self, document: &Value) -> Vec<Permission> {
        let mut permissions = Vec::new();
        for entry in document["Statement"].as_array().into_iter().flatten() {
            for (condition, statement) in branches(entry) {
                assert!(
                    statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
                    "NotAction and NotResource grant what they do not name: {statement}"
                );
                if statement["Effect"] != "Allow" {
                    continue;
                }
                for action in strings(&statement["Action"]) {
                    for resource in as_list(&statement["Resource"]) {
                        permissions.push(Permission {
                            condition: condition.clone(),
                            action: action.clone(),
                            resource: self.describe_resource(resource),
                            statement: statement.clone(),
                        });
                    }
                }
            }
        }
        permissions
    }

    /// A resource as the tests name it: `*`, `secret:connections/*/serve`
    /// (a pattern with the template's prefix and the 6-character suffix),
    /// `name:connections/*/serve` (the same without the suffix, which only
    /// a name that does not exist matches),
    /// `secret:system/signing-key` (the template's secret), `arn-of:Id`,
    /// `ref:Parameter`, or `unrecognized:...` for anything else.
    pub fn describe_resource(&self, resource: &Value) -> String {
        if resource == "*" {
            return "*".into();
        }
        if let Some(pattern) = resource["Fn::Sub"].as_str() {
            let Some(name) = pattern.strip_prefix(SECRET_ARN_HEAD) else {
                return format!("unrecognized:{resource}");
            };
            return match name.strip_suffix("-??????") {
                Some(name) => format!("secret:{name}"),
                None => format!("name:{name}"),
            };
        }
        if let Some(id) = resource["Ref"].as_str() {
            let target = self.resources().get(id);
            if let Some(secret) = target.filter(|t| t["Type"] == "AWS::SecretsManager::Secret")
                && let Some(name) = secret["Properties"]["Name"]["Fn::Sub"]
                    .as_str()
                    .and_then(|n| n.strip_prefix("${SecretPrefix}"))
            {
                return format!("secret:{name}");
            }
            return format!("ref:{id}");
        }
        if let Some(get_att) = resource["Fn::GetAtt"].as_array()
            && get_att.get(1).is_some_and(|a| a == "Arn")
            && let Some(id) = get_att[0].as_str()
        {
            return format!("arn-of:{id}");
        }
        format!("unrecognized:{resource}")
    }

    /// Every policy document in the template: inline role policies, policy
    /// resources and SAM function policies.
    pub fn all_policy_documents(&self) -> Vec<(String, &Value)> {
        let mut documents = Vec::new();
        for (id, resource) in self.resources() {
            let properties = &resource["Properties"];
            for policy in properties["Policies"].as_array().into_iter().flatten() {
                let document = if policy.get("PolicyDocument").is_some() {
                    &policy["PolicyDocument"]
                } else {
                    policy
                };
                documents.push((id.clone(), document));
            }
            if properties.get("PolicyDocument").is_some() {
                documents.push((id.clone(), &properties["PolicyDocument"]));
            }
        }
        documents
    }
}

/// One allowed action on one resource.
#[derive(Clone, Debug)]
pub struct Permission {
    /// `Some("HasKmsKey")` when granted only under that condition,
    /// `Some("!HasKmsKey")` for the other branch, `None` always.
    pub condition: Option<String>,
    pub action: String,
    /// As [`Template::describe_resource`] names it.
    pub resource: String,
    pub statement: Value,
}

impl Permission {
    /// `condition? action @ resource`, for comparisons and messages.
    pub fn key(&self) -> String {
        match &self.condition {
            Some(condition) => format!("[{condition}] {} @ {}", self.action, self.resource),
            None => format!("{} @ {}", self.action, self.resource),
        }
    }
}

/// The values an entry takes: both branches of an `Fn::If` (with the
/// condition, negated for the second), nothing for `AWS::NoValue`.
pub fn branches(value: &Value) -> Vec<(Option<String>, Value)> {
    if value["Ref"] == "AWS::NoValue" {
        return Vec::new();
    }
    if let Some([condition, yes, no]) = value["Fn::If"].as_array().map(Vec::as_slice) {
        let condition = condition.as_str().unwrap_or("?");
        let mut out: Vec<(Option<String>, Value)> = branches(yes)
            .into_iter()
            .map(|(_, v)| (Some(condition.to_owned()), v))
            .collect();
        out.extend(
            branches(no)
                .into_iter()
                .map(|(_, v)| (Some(format!("!{condition}")), v)),
        );
        return out;
    }
    vec![(None, value.clone())]
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn strings(value: &Value) -> Vec<String> {
    as_list(value)
        .into_iter()
        .map(|v| match v.as_str() {
            Some(s) => s.to_owned(),
            None => format!("unrecognized:{v}"),
        })
        .collect()
}

/// YAML with short-form tags to JSON with long-form intrinsic functions.
fn long_form(value: serde_norway::Value) -> Result<Value, String> {
    use serde_norway::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).map_err(|e| e.to_string())?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(long_form).collect::<Result<_, _>>()?)
        }
        Y::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    other => serde_norway::to_string(&other)
                        .map_err(|e| e.to_string())?
                        .trim()
                        .to_owned(),
                };
                object.insert(key, long_form(value)?);
            }
            Value::Object(object)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = long_form(tagged.value)?;
            let (key, inner) = match name {
                "Ref" | "Condition" => (name.to_owned(), inner),
                "GetAtt" => {
                    let inner = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((resource, attribute)) => {
                                Value::Array(vec![resource.into(), attribute.into()])
                            }
                            None => return Err(format!("!GetAtt {s} names no attribute")),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_owned(), inner)
                }
                _ => (format!("Fn::{name}"), inner),
            };
            let mut object = Map::new();
            object.insert(key, inner);
            Value::Object(object)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms_read_the_same() {
        let short = Template::parse(
            "Resources:\n  A:\n    Properties:\n      X: !Ref P\n      Y: !GetAtt R.Arn\n      Z: !If [C, !Sub 'a-${P}', !Ref AWS::NoValue]\n",
        )
        .unwrap();
        let long = Template::parse(
            "Resources:\n  A:\n    Properties:\n      X: {Ref: P}\n      Y: {'Fn::GetAtt': [R, Arn]}\n      Z: {'Fn::If': [C, {'Fn::Sub': 'a-${P}'}, {Ref: AWS::NoValue}]}\n",
        )
        .unwrap();
        assert_eq!(short.root(), long.root());
        let z = &short.resource("A")["Properties"]["Z"];
        assert_eq!(
            branches(z),
            vec![(
                Some("C".to_owned()),
                serde_json::json!({"Fn::Sub": "a-${P}"})
            )]
        );
    }
}
