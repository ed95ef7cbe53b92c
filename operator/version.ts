// The operator's version: the package version, recorded in every frozen configuration.
import packageJson from '../package.json' with { type: 'json' };

export const OPERATOR_VERSION: string = packageJson.version;
