"""Built-in data sets, made offline from packaged material (npm packages, Debian fonts, fortunes,
espeak-ng): one builder module per data set, plus the helpers only they use."""
