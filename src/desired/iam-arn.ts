// The IAM role ARN a workspace's role will have, computable before IAM is called.
import type { ControllerConfig } from '../config/config.js';

export function roleArnFor(cfg: Pick<ControllerConfig, 'aws'>, roleName: string): string {
  return `arn:${cfg.aws.partition}:iam::${cfg.aws.accountId}:role${cfg.aws.rolePath}${roleName}`;
}
