// The harness's Kubernetes helpers, with the one vitest-bound default: inside a test worker the connection
// is the control plane that global-setup.ts provided.
import type { KubeConfig } from '@kubernetes/client-node';
import { inject } from 'vitest';
import { type Identity, type KubeConnection, kubeConfigFor as kubeConfigOf } from '../../harness/kube.js';

export * from '../../harness/kube.js';

/** A KubeConfig for `identity`; without `conn`, for the control plane of this test run. */
export function kubeConfigFor(identity: Identity, conn: KubeConnection = inject('kube')): KubeConfig {
  return kubeConfigOf(identity, conn);
}
