// The ESM build of wgsl_reflect ships no declaration of its own path; its types are the package's.
declare module "wgsl_reflect/wgsl_reflect.module.js" {
  export * from "wgsl_reflect";
}
