// What test/support/global-setup.ts hands to test workers via `provide()`; read it with `inject()`.
import type { KubeConnection } from '../../harness/controlplane.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The shared control plane: server URL, CA and the admin / controller bearer tokens. */
    kube: KubeConnection;
    /** moto server (IAM emulator), e.g. http://127.0.0.1:PORT. */
    motoEndpoint: string;
  }
}
