//! The OpenAPI document the forge serves (`src/openapi.json`) is the one `lanes_api::openapi`
//! builds from the wire types: a field added to a type and not to the document, or the other
//! way round, fails here. `UPDATE_OPENAPI=1 cargo nextest run -p lanes-server --test openapi`
//! writes it again.

use std::path::PathBuf;

#[test]
fn the_served_openapi_document_is_the_one_built_from_the_wire_types() {
    let built = lanes_api::openapi::document();
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&built).expect("a document")
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &text).expect("writes openapi.json");
        // The served copy is compiled in: it is the new one from the next build on.
        return;
    }
    let served = std::fs::read_to_string(&path).expect("reads openapi.json");
    assert!(
        served == text,
        "src/openapi.json is not the document built from lanes-api's types: run \
         `UPDATE_OPENAPI=1 cargo nextest run -p lanes-server --test openapi` and commit the result"
    );
    assert_eq!(served, lanes_server::api::OPENAPI);
}

#[test]
fn every_reference_in_the_document_names_a_schema_it_has() {
    let doc = lanes_api::openapi::document();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let text = doc.to_string();
    let mut missing = Vec::new();
    for part in text.split("\"$ref\":\"").skip(1) {
        let target = part.split('"').next().unwrap_or_default();
        if let Some(name) = target.strip_prefix("#/components/schemas/") {
            if !schemas.contains_key(name) {
                missing.push(name.to_owned());
            }
        } else if ![
            "#/components/responses/Error",
            "#/components/responses/Busy",
        ]
        .contains(&target)
        {
            missing.push(target.to_owned());
        }
    }
    assert!(missing.is_empty(), "dangling references: {missing:?}");
}
