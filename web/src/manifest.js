// A model folder's model.json, read without onnxruntime-web (the first digits need only it).
import { ModelError } from "./errors.js";

const FORMAT = "digitvae-model";
const FORMAT_VERSION = 1;

/** Fetch `url`; throws a ModelError naming `what` unless the response is 2xx. */
export async function fetchOk(url, what) {
  const response = await fetch(url);
  if (!response.ok) throw new ModelError(`cannot read ${what} at ${url}: HTTP ${response.status}`);
  return response;
}

/** Return {latentDim, numClasses} of a manifest; throws a ModelError if it is not a digitvae model.json. */
export function readManifest(manifest, url) {
  if (manifest?.format !== FORMAT || manifest?.format_version !== FORMAT_VERSION) {
    throw new ModelError(`${url} is not a ${FORMAT} manifest of format_version ${FORMAT_VERSION}`);
  }
  const { latent_dim: latentDim, num_classes: numClasses } = manifest;
  if (!Number.isInteger(latentDim) || latentDim < 1 || !Number.isInteger(numClasses) || numClasses < 0) {
    throw new ModelError(`${url}: latent_dim and num_classes must be non-negative integers`);
  }
  return { latentDim, numClasses };
}

/** Fetch and check the model.json of the folder served at `base`. */
export async function fetchManifest(base) {
  const manifest = await (await fetchOk(new URL("model.json", base), "model.json")).json();
  readManifest(manifest, base);
  return manifest;
}
