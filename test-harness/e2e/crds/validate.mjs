// Validates Kubernetes objects with the kubernetes-models packages (package-lock.json pins
// them): validators compiled from the CRDs that Istio and Envoy Gateway publish.
//
// stdin: [{"package", "model", "class", "schema", "doc"}, …]: the npm package, the module of
//   its model class (e.g. "extensions.istio.io/v1alpha1/WasmPlugin"), the class, the
//   package's compiled schema (`_schemas/<schema>.js`) and the object.
// stdout: [{"errors", "schema_valid", "fields"}, …], one per object:
//   errors: what the model's own validate() refuses, [{path, keyword, message, params}];
//   schema_valid: the verdict of the schema function when it is run directly;
//   fields: for each object the schema function reached (a JSON pointer), the field names
//     it looked up there, present or not: the fields the schema knows. An object where it
//     looked up none is one whose schema keeps any field (x-kubernetes-preserve-unknown-fields).
// The packages do not refuse unknown fields (an API server prunes them); the caller does,
// from `fields`.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
const packageDir = (name) => dirname(require.resolve(`${name}/package.json`));

// `value`, with every field looked up in it or below recorded in `fields`.
function recording(value, pointer, fields) {
  if (value === null || typeof value !== "object") return value;
  const names = Array.isArray(value) ? null : (fields[pointer] ??= new Set());
  return new Proxy(value, {
    get(target, key, receiver) {
      const found = Reflect.get(target, key, receiver);
      if (typeof key !== "string") return found;
      // Every name looked up, present or not: an object whose fields are all misspelt still
      // shows which fields its schema knows.
      names?.add(key);
      if (!Object.hasOwn(target, key)) return found;
      return recording(found, `${pointer}/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`, fields);
    },
  });
}

const out = [];
for (const { package: pkg, model, class: cls, schema, doc } of JSON.parse(readFileSync(0, "utf8"))) {
  const Model = (await import(`${pkg}/${model}`))[cls];
  if (typeof Model !== "function") throw new Error(`${pkg}/${model} has no class ${cls}`);
  let errors = [];
  try {
    new Model(doc).validate();
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    errors = e.errors.map(({ instancePath, keyword, message, params }) =>
      ({ path: instancePath, keyword, message, params }));
  }
  const file = join(packageDir(pkg), "_schemas", `${schema}.js`);
  const { validate } = await import(pathToFileURL(file).href);
  const fields = {};
  const schemaValid = validate(recording(doc, "", fields));
  out.push({
    errors,
    schema_valid: schemaValid,
    fields: Object.fromEntries(Object.entries(fields).map(([p, s]) => [p, [...s].sort()])),
  });
}
process.stdout.write(JSON.stringify(out));
