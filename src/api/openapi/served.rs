//! What the running server serves, in the request schemas: the models each body may name (by
//! task, so a classifier named on an embeddings route is a schema error, as it is a request
//! error) and the widest embedding `dimensions` may ask for.

use serde_json::{Value, json};

use crate::models::Task;
use crate::runtime::Runtime;

/// The request bodies with a `model` field and the tasks whose models they take.
const MODEL_FIELDS: &[(&str, &[Task])] = &[
    ("ClassifyBody", &[Task::Classify]),
    ("PredictBody", &[Task::Classify]),
    ("EmbedBody", &[Task::Embed]),
    ("TokenizeBody", &[Task::Classify, Task::Embed]),
    ("DecodeBody", &[Task::Classify, Task::Embed]),
    ("TranslateBody", &[Task::Translate]),
    (
        "CompareBody",
        &[Task::Classify, Task::Embed, Task::Translate],
    ),
];

pub(super) fn add_models(doc: &mut Value, rt: &Runtime) {
    let views = rt.registry.views(|_| 0);
    let of_tasks = |tasks: &[Task]| -> Vec<Value> {
        views
            .iter()
            .filter(|m| m.task.is_some_and(|t| tasks.contains(&t)))
            .map(|m| json!(m.name))
            .collect()
    };
    // TEI's `/info?model=`: the models TEI's routes serve.
    let tei = of_tasks(&[Task::Classify, Task::Embed]);
    if !tei.is_empty() {
        for p in doc["paths"]["/info"]["get"]["parameters"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == "model")
        {
            p["schema"]["enum"] = Value::Array(tei.clone());
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    // OpenAI clients name OpenAI's models: any name but another task's model is the served
    // embedder (`api::openai`).
    let others = of_tasks(&[Task::Classify, Task::Translate]);
    if !others.is_empty() {
        schemas["EmbeddingsBody"]["properties"]["model"]["not"] = json!({"enum": others});
    }
    for (body, tasks) in MODEL_FIELDS {
        let names = of_tasks(tasks);
        let field = &mut schemas[*body]["properties"]["model"];
        // No model of the task loaded yet: nothing to list (an empty enum is not valid).
        if names.is_empty() || !field.is_object() {
            continue;
        }
        let nullable = field["type"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "null"));
        let mut allowed = names;
        if nullable {
            allowed.push(Value::Null);
        }
        field["enum"] = Value::Array(allowed);
    }
    // Token ids below the smallest vocabulary of a model that decodes (every one has 30,522
    // today; a larger one would make the bound too tight, never too loose).
    let vocab = views
        .iter()
        .flat_map(|m| &m.variants)
        .filter_map(|v| v.engine.as_ref()?.vocab_size())
        .min();
    if let Some(n) = vocab {
        let max = json!(n.saturating_sub(1));
        for list in schemas["TokenIds"]["oneOf"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let items = &mut list["items"];
            let item = if items["type"] == "array" {
                &mut items["items"]
            } else {
                items
            };
            item["maximum"] = max.clone();
        }
    }
    // `dimensions` up to the widest vector a served model gives.
    let widest = views
        .iter()
        .flat_map(|m| &m.variants)
        .filter_map(|v| v.engine.as_ref()?.embedding_dim())
        .max();
    if let Some(w) = widest {
        for body in ["EmbedBody", "EmbeddingsBody"] {
            schemas[body]["properties"]["dimensions"]["maximum"] = json!(w);
        }
    }
}
