//! JSON to protobuf and back with the proto3 JSON mapping, through prost-reflect's dynamic
//! messages over the descriptor set compiled into the binary: no second code generator, and no
//! JSON written by hand. Errors are field violations: which part of the request, and what is wrong.

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};
use serde_json::{Map, Value};

use crate::error::FieldViolation;

const SERVICE: &str = "flytenotify.v1.NotificationService";

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // The global pool already holds google.protobuf's well-known types (Timestamp, Duration),
    // which prost-reflect maps to RFC 3339 and "1.5s" strings.
    let mut pool = DescriptorPool::global();
    pool.decode_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the embedded descriptor set is valid");
    pool
});

pub fn pool() -> &'static DescriptorPool {
    &POOL
}

pub fn method(rpc: &str) -> MethodDescriptor {
    pool()
        .get_service_by_name(SERVICE)
        .and_then(|s| s.methods().find(|m| m.name() == rpc))
        .unwrap_or_else(|| panic!("{SERVICE}/{rpc} is in the route table but not the descriptors"))
}

/// The request message of `method` from a JSON body (empty means `{}`), with `extra` fields (the
/// path's `{id}`, the query string) merged in, as protobuf bytes.
pub fn request(
    method: &MethodDescriptor,
    body: &[u8],
    extra: Map<String, Value>,
) -> Result<Vec<u8>, FieldViolation> {
    let input = method.input();
    let mut json: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| FieldViolation::new("body", format!("the body is not valid JSON: {e}")))?
    };
    let Value::Object(object) = &mut json else {
        return Err(FieldViolation::new(
            "body",
            format!("the body must be a JSON object (a {})", input.name()),
        ));
    };
    for (name, value) in extra {
        // A field named both in the body and the path/query would leave one of them ignored.
        if let Some(field) = find_field(&input, &name)
            && (object.contains_key(field.name()) || object.contains_key(field.json_name()))
            && object.get(field.name()).or(object.get(field.json_name())) != Some(&value)
        {
            return Err(FieldViolation::new(
                field.name(),
                "given both in the path or query string and in the body, differently",
            ));
        }
        object.insert(name, value);
    }
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    // The tracker tells where in the body the deserializer stopped, which its errors do not say.
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(json, &mut track);
    let message = DynamicMessage::deserialize_with_options(input.clone(), tracked, &options)
        .map_err(|e| {
            let path = track.path().to_string();
            let field = if path == "." {
                "body".to_string()
            } else {
                path
            };
            FieldViolation::new(
                field,
                format!(
                    "not a valid {} in the proto3 JSON mapping: {e}",
                    input.name()
                ),
            )
        })?;
    Ok(message.encode_to_vec())
}

fn find_field(message: &MessageDescriptor, name: &str) -> Option<prost_reflect::FieldDescriptor> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
}

/// `name=value` pairs, percent-decoded. A `+` stays a `+` rather than becoming a space as in HTML
/// forms: FlyteAdmin filters join their terms with it (`eq(project,a)+eq(state,dead)`), and a
/// curl command should not need it written `%2B`.
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(move |pair| match pair.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(pair), String::new()),
        })
}

/// Query parameters as the JSON fields they stand for: `limit=5` is a number, `includeExpired=true`
/// a bool, a repeated field may be given more than once. Either name of a field is accepted.
pub fn query_fields(
    method: &MethodDescriptor,
    query: Option<&str>,
) -> Result<Map<String, Value>, FieldViolation> {
    let input = method.input();
    let mut fields = Map::new();
    for (name, value) in query_pairs(query.unwrap_or("")) {
        let Some(field) = find_field(&input, &name) else {
            let known: Vec<String> = input.fields().map(|f| f.json_name().to_string()).collect();
            return Err(FieldViolation::new(
                name.as_str(),
                format!(
                    "no such query parameter for {}; it takes: {}",
                    method.name(),
                    known.join(", ")
                ),
            ));
        };
        let scalar = match field.kind() {
            Kind::Bool => match value.as_str() {
                "true" | "" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => {
                    return Err(FieldViolation::new(
                        field.name(),
                        format!("{other:?} is not true or false"),
                    ));
                }
            },
            Kind::Message(m) => {
                return Err(FieldViolation::new(
                    field.name(),
                    format!("a {} cannot be given in the query string", m.name()),
                ));
            }
            // The proto3 JSON mapping accepts numbers as strings; checked here so that the
            // error names the parameter.
            Kind::Int32
            | Kind::Sint32
            | Kind::Sfixed32
            | Kind::Int64
            | Kind::Sint64
            | Kind::Sfixed64
                if value.parse::<i64>().is_err() =>
            {
                return Err(not_a_number(&field, &value));
            }
            Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64
                if value.parse::<u64>().is_err() =>
            {
                return Err(not_a_number(&field, &value));
            }
            Kind::Float | Kind::Double if value.parse::<f64>().is_err() => {
                return Err(not_a_number(&field, &value));
            }
            // Strings, enum names (checked by the deserializer), and numbers.
            _ => Value::String(value),
        };
        let key = field.json_name().to_string();
        if field.is_list() {
            match fields
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(values) => values.push(scalar),
                _ => unreachable!("list fields are inserted as arrays"),
            }
        } else if fields.insert(key, scalar).is_some() {
            return Err(FieldViolation::new(
                field.name(),
                "given more than once in the query string",
            ));
        }
    }
    Ok(fields)
}

fn not_a_number(field: &prost_reflect::FieldDescriptor, value: &str) -> FieldViolation {
    FieldViolation::new(
        field.name(),
        format!("{value:?} is not a number of the kind {:?}", field.kind()),
    )
}

/// The response message of `method`, protobuf bytes, as proto3 JSON: lowerCamelCase names,
/// enums by name, 64-bit integers as strings, fields at their defaults left out.
pub fn response(method: &MethodDescriptor, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let message = DynamicMessage::decode(method.output(), bytes)?;
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    message.serialize_with_options(&mut serializer, &SerializeOptions::new())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::flytenotify::v1::{ListPendingRequest, ListSilencesRequest};

    #[test]
    fn query_strings_become_typed_fields_under_either_name() {
        let m = method("ListPending");
        let extra = query_fields(
            &m,
            Some("limit=5&filters=eq(state,dead)+eq(project%2Ca%20b)&token=t1"),
        )
        .unwrap();
        let bytes = request(&m, b"", extra).unwrap();
        let decoded = ListPendingRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.limit, 5);
        assert_eq!(decoded.filters, "eq(state,dead)+eq(project,a b)");
        assert_eq!(decoded.token, "t1");

        let m = method("ListSilences");
        for query in ["includeExpired=true", "include_expired=true"] {
            let bytes = request(&m, b"", query_fields(&m, Some(query)).unwrap()).unwrap();
            assert!(
                ListSilencesRequest::decode(bytes.as_slice())
                    .unwrap()
                    .include_expired
            );
        }
    }

    #[test]
    fn bad_query_parameters_are_named() {
        let m = method("ListPending");
        let e = query_fields(&m, Some("limt=5")).unwrap_err();
        assert_eq!(e.field, "limt");
        assert!(e.description.contains("limit, token, filters"), "{e:?}");
        let e = query_fields(&m, Some("limit=five")).unwrap_err();
        assert_eq!(e.field, "limit");
        assert!(e.description.contains("\"five\" is not a number"), "{e:?}");
        let m = method("ListSilences");
        let e = query_fields(&m, Some("includeExpired=yes")).unwrap_err();
        assert_eq!(e.field, "include_expired");
    }

    #[test]
    fn unknown_fields_and_malformed_bodies_are_refused() {
        let m = method("Enqueue");
        let e = request(&m, br#"{"requestId": "a", "bogus": 1}"#, Map::new()).unwrap_err();
        assert!(e.description.contains("bogus"), "{e:?}");
        // A wrong value deep inside is named by its path.
        let body = br#"{"notifications": [{"phases": ["LATE"]}]}"#;
        let e = request(&m, body, Map::new()).unwrap_err();
        assert_eq!(e.field, "notifications[0].phases[0]", "{e:?}");
        let e = request(&m, b"{\"requestId\": ", Map::new()).unwrap_err();
        assert!(
            e.description.starts_with("the body is not valid JSON"),
            "{e:?}"
        );
        let e = request(&m, b"[1]", Map::new()).unwrap_err();
        assert!(e.description.contains("EnqueueRequest"), "{e:?}");
    }

    #[test]
    fn a_path_field_that_contradicts_the_body_is_refused() {
        let m = method("ExpireSilence");
        let mut extra = Map::new();
        extra.insert("silence_id".into(), Value::String("a".into()));
        assert!(request(&m, br#"{"silenceId": "a"}"#, extra.clone()).is_ok());
        let e = request(&m, br#"{"silenceId": "b"}"#, extra).unwrap_err();
        assert_eq!(e.field, "silence_id");
    }
}
