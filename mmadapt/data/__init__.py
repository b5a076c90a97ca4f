"""Datasets: registered formats (:mod:`mmadapt.data.formats`: real datasets as their official files;
:mod:`mmadapt.data.synthetic`: generators that write the same layouts), each reading a split once into a
:class:`~mmadapt.data.split.Split` — its samples and its label space."""
