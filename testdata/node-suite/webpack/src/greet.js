import startCase from 'lodash/startCase';

export function greet(name) {
  return `Hello, ${startCase(name)}!`;
}
